// Several merge jobs in one read pass (run_jobs): every output is the one its
// job writes alone, byte for byte, and each input tensor is read once.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "engine/tiny_model.hpp"
#include "hf/synthetic.hpp"
#include "merge/job.hpp"
#include "merge/methods/registry.hpp"
#include "merge/open_family.hpp"
#include "merge/rules.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

namespace fs = std::filesystem;
using Family = test::OpenFamily;

// A family with extra target rows (so tasks combine only the shared rows),
// a control post from another family, and five jobs of every kind a sweep
// builds: plain weights, a two-pass method, a control vector, an ablation and
// a one-pass random method.
struct SharedPassCase {
  test::TempDir dir;
  std::unique_ptr<Family> fam;
  std::unique_ptr<ModelFolder> control;
  std::vector<JobInputs> inputs;
  std::vector<JobSpec> specs;

  SharedPassCase() {
    FamilyOptions options;
    options.post_delta = 0.3;
    options.target_extra_rows = 3;
    write_family(dir / "a", options);
    options.seed = 2;
    write_family(dir / "c", options);
    fam = std::make_unique<Family>(dir / "a");
    control = ModelFolder::open((dir / "c" / "post").string());
    add(fam->inputs(), {0.5, 1.0});
    add(fam->inputs(), {1.0}).method = &merge_method("ties");
    specs.back().method_params = {{"density", ParamSetting(0.3)}};
    add(JobInputs{{{fam->pre.get(), control.get()}}, fam->target.get()}, {1.0});
    add(fam->inputs(), {1.5}).rules = part_rules({"attention"}, true);
    add(fam->inputs(), {1.0}).method = &merge_method("dare_ties");
    specs.back().method_params = {{"density", ParamSetting(0.5)}, {"seed", ParamSetting(7.0)}};
  }

  JobSpec& add(JobInputs in, std::vector<double> weights) {
    inputs.push_back(std::move(in));
    JobSpec& spec = specs.emplace_back();
    spec.weights = std::move(weights);
    spec.max_shard_bytes = 100'000;  // several shards even for the tiny shape
    return spec;
  }

  // Points every job's output under `root`.
  void output_to(const fs::path& root) {
    for (size_t j = 0; j < specs.size(); ++j) specs[j].output = root / ("job" + std::to_string(j));
  }

  std::vector<JobPlan> plans() const {
    std::vector<JobPlan> plans;
    for (size_t j = 0; j < specs.size(); ++j) plans.push_back(plan_job(inputs[j], specs[j]));
    return plans;
  }

  std::vector<JobResult> run_shared(const std::vector<JobPlan>& plans) const {
    std::vector<SharedJob> jobs;
    for (size_t j = 0; j < specs.size(); ++j) jobs.push_back({&inputs[j], &specs[j], &plans[j]});
    return run_jobs(jobs);
  }
};

void expect_same_outputs(const JobResult& alone, const JobResult& shared) {
  ASSERT_EQ(alone.outputs.size(), shared.outputs.size());
  for (size_t k = 0; k < alone.outputs.size(); ++k) {
    test::expect_same_shards(alone.outputs[k].path, shared.outputs[k].path);
  }
  // The vector's statistics (model card, provenance) are the job's own.
  EXPECT_EQ(alone.vector_stats_complete, shared.vector_stats_complete);
  ASSERT_EQ(alone.vector_by_kind.size(), shared.vector_by_kind.size());
  for (const auto& [kind, sums] : alone.vector_by_kind) {
    const kernels::DeltaSums& other = shared.vector_by_kind.at(kind);
    EXPECT_EQ(sums.a_sq, other.a_sq) << kind;
    EXPECT_EQ(sums.base_sq, other.base_sq) << kind;
  }
}

// Bytes of the post tensors the plain job combines.
uint64_t post_bytes(const JobPlan& plan) {
  uint64_t bytes = 0;
  for (const auto& t : plan.tasks) {
    if (!t.copied()) bytes += dtype_bytes(t.vectors.front().post->info->dtype, t.combined_elements);
  }
  return bytes;
}

TEST(SharedPass, EveryJobWritesTheBytesItWritesAlone) {
  SharedPassCase c;
  c.output_to(c.dir / "alone");
  const std::vector<JobPlan> alone_plans = c.plans();
  std::vector<JobResult> alone;
  for (size_t j = 0; j < c.specs.size(); ++j) alone.push_back(run_job(c.inputs[j], c.specs[j], alone_plans[j]));

  for (const unsigned threads : {1u, 3u, 9u}) {  // 9: each file also runs statistics passes ahead
    c.output_to(c.dir / ("shared" + std::to_string(threads)));
    for (auto& spec : c.specs) spec.threads = threads;
    const std::vector<JobPlan> plans = c.plans();
    const std::vector<JobResult> shared = c.run_shared(plans);
    ASSERT_EQ(shared.size(), alone.size());
    for (size_t j = 0; j < alone.size(); ++j) {
      SCOPED_TRACE("job " + std::to_string(j) + ", threads " + std::to_string(threads));
      expect_same_outputs(alone[j], shared[j]);
      EXPECT_EQ(shared[j].bytes_read, shared[0].bytes_read);  // one pass, reported in every job
    }
    // The union of the inputs: TIES's three reads of post and pre, the
    // target once, and the control's post once (its pre is the shared one).
    const uint64_t control_post = alone[2].bytes_read - alone[0].bytes_read + post_bytes(alone_plans[0]);
    EXPECT_EQ(shared[0].bytes_read, alone[1].bytes_read + control_post);
  }
}

// Tied embeddings with extra target rows, and jobs whose vectors overlap in
// other ways: a saved vector (no pre) beside the (post, pre) pair it came
// from, two vectors of one post with other pres, another scale for the same
// tensors, and an ablation that copies the embeddings the others combine.
TEST(SharedPass, OverlappingVectorsScalesAndTiedEmbeddingsWriteTheBytesOfEachJobAlone) {
  test::TempDir dir;
  FamilyOptions options;
  options.post_delta = 0.3;
  options.target_extra_rows = 3;
  options.tied = true;
  write_family(dir / "a", options);
  options.seed = 2;
  write_family(dir / "c", options);
  const Family fam(dir / "a");
  const auto other_pre = ModelFolder::open((dir / "c" / "pre").string());
  JobSpec extract;
  extract.kind = JobKind::kExtract;
  extract.weights = {1.0};
  extract.out_dtype = DType::kF32;
  extract.output = dir / "vector";
  const JobInputs extract_inputs{{{fam.pre.get(), fam.post.get()}}};
  run_job(extract_inputs, extract, plan_job(extract_inputs, extract));
  const auto vector = ModelFolder::open((dir / "vector").string());

  std::vector<JobInputs> inputs = {fam.inputs(),
                                   {{{nullptr, vector.get()}}, fam.target.get()},
                                   {{{fam.pre.get(), fam.post.get()}, {other_pre.get(), fam.post.get()}}, fam.target.get()},
                                   fam.inputs(),
                                   fam.inputs()};
  std::vector<JobSpec> specs(inputs.size());
  specs[0].weights = {0.5, 1.0};
  specs[1].kind = JobKind::kApply;
  specs[1].weights = {1.0};
  specs[2].weights = {0.5};
  specs[3].weights = {1.0};
  specs[3].rules.push_back(TensorRule::scaled("model\\.layers\\..*=0.5"));
  specs[4].weights = {1.0};
  specs[4].rules = part_rules({"embeddings"}, false);
  const auto run = [&](const fs::path& root, bool shared) {
    std::vector<JobPlan> plans;
    for (size_t j = 0; j < specs.size(); ++j) {
      specs[j].max_shard_bytes = 100'000;
      specs[j].output = root / ("job" + std::to_string(j));
      plans.push_back(plan_job(inputs[j], specs[j]));
    }
    std::vector<JobResult> results;
    for (size_t j = 0; j < specs.size() && !shared; ++j) results.push_back(run_job(inputs[j], specs[j], plans[j]));
    if (!shared) return results;
    std::vector<SharedJob> jobs;
    for (size_t j = 0; j < specs.size(); ++j) jobs.push_back({&inputs[j], &specs[j], &plans[j]});
    return run_jobs(jobs);
  };
  const std::vector<JobResult> alone = run(dir / "alone", false), shared = run(dir / "shared", true);
  for (size_t j = 0; j < alone.size(); ++j) {
    SCOPED_TRACE("job " + std::to_string(j));
    expect_same_outputs(alone[j], shared[j]);
  }
  // Post and pre once, the saved vector and the other pre once each.
  EXPECT_LT(shared[0].bytes_read, alone[0].bytes_read + alone[1].bytes_read);
}

// Each job has its own NaN/Inf budget: an overflowing weight in one job that
// allows it leaves the other's output clean; in one that does not, the pass
// stops naming that job's output, and no output of any job appears.
TEST(SharedPass, EachJobHasItsOwnNonfiniteBudget) {
  SharedPassCase c;
  c.specs.resize(2);
  c.inputs.resize(2);
  c.specs[1].method = nullptr;
  c.specs[1].method_params.clear();
  c.specs[1].weights = {1e9};  // F16 tops out at 65504
  for (auto& spec : c.specs) spec.out_dtype = DType::kF16;
  c.specs[1].max_new_nonfinite = 1'000'000'000;
  c.output_to(c.dir / "allowed");
  const std::vector<JobResult> allowed = c.run_shared(c.plans());
  EXPECT_TRUE(allowed[0].outputs[0].nonfinite.empty());
  EXPECT_FALSE(allowed[1].outputs[0].nonfinite.empty());

  c.specs[1].max_new_nonfinite = 0;
  c.output_to(c.dir / "refused");
  try {
    c.run_shared(c.plans());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find((c.dir / "refused" / "job1").string() + ": w = 1000000000 turned"),
              std::string::npos)
        << e.what();
  }
  for (const auto& e : fs::recursive_directory_iterator(c.dir / "refused")) {  // partial folders only
    const fs::path relative = fs::relative(e.path(), c.dir / "refused");
    const bool hidden = std::ranges::any_of(relative, [](const fs::path& part) { return part.string().starts_with("."); });
    EXPECT_TRUE(e.is_directory() || hidden) << e.path();
  }
}

// The progress total is what the pass reads (or found it need not read), and
// the last report reaches it, whatever the threads and whichever outputs an
// earlier run finished.
TEST(SharedPass, ProgressEndsAtItsTotalWhichIsWhatThePassRead) {
  SharedPassCase c;
  for (const unsigned threads : {1u, 9u}) {
    c.output_to(c.dir / ("out" + std::to_string(threads)));
    for (auto& spec : c.specs) spec.threads = threads;
    const std::vector<JobPlan> plans = c.plans();
    if (threads > 1) run_job(c.inputs[1], c.specs[1], plans[1]);  // TIES's output is complete: its reads are not needed
    std::vector<SharedJob> jobs;
    for (size_t j = 0; j < c.specs.size(); ++j) jobs.push_back({&c.inputs[j], &c.specs[j], &plans[j]});
    std::mutex mutex;
    uint64_t last = 0, total = 0;
    const auto results = run_jobs(jobs, [&](uint64_t done, uint64_t of) {
      const std::lock_guard lock(mutex);
      EXPECT_LE(done, of);
      last = std::max(last, done), total = of;
    });
    SCOPED_TRACE(threads);
    EXPECT_EQ(last, total);
    EXPECT_EQ(total, results[0].bytes_read + results[0].bytes_skipped);
  }
}

TEST(SharedPass, AnOutputFinishedEarlierIsKeptWhileTheOthersAreBuilt) {
  SharedPassCase c;
  c.output_to(c.dir / "out");
  const std::vector<JobPlan> plans = c.plans();
  run_job(c.inputs[1], c.specs[1], plans[1]);
  const std::vector<JobResult> shared = c.run_shared(plans);
  EXPECT_TRUE(shared[1].outputs[0].already_complete);
  EXPECT_FALSE(shared[0].outputs[0].already_complete);
  EXPECT_TRUE(fs::exists(c.specs[3].output / "model.safetensors.index.json"));
}

TEST(SharedPass, JobsWhoseFilesDifferAreRefusedBeforeAnythingIsWritten) {
  SharedPassCase c;
  c.output_to(c.dir / "out");
  c.specs[2].out_dtype = DType::kF32;
  const std::vector<JobPlan> plans = c.plans();
  try {
    c.run_shared(plans);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUsage);
    EXPECT_NE(std::string(e.what()).find("cannot share a read pass"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(c.dir / "out"));
}


// Models whose embeddings have `vocab` rows: a vector combines the rows its
// pre, post and target share.
std::unique_ptr<ModelFolder> vocab_model(const fs::path& folder, size_t vocab, uint64_t seed) {
  test::TinyModelSpec spec;
  spec.vocab = vocab;
  spec.seed = seed;
  test::write_tiny_model(folder, spec);
  return ModelFolder::open(folder.string());
}

// A job that copies a tensor agrees with every other job on it, but two
// jobs that both combine it must combine the same rows, whichever job
// comes first.
TEST(SharedPass, JobsThatCombineOtherRowsAreRefusedWhateverTheOrder) {
  test::TempDir dir;
  const auto pre = vocab_model(dir / "pre", 100, 1), post = vocab_model(dir / "post", 100, 2),
             target = vocab_model(dir / "target", 100, 3), control = vocab_model(dir / "control", 96, 4);
  const std::vector<JobInputs> inputs = {{{{pre.get(), post.get()}}, target.get()},
                                         {{{pre.get(), post.get()}}, target.get()},
                                         {{{pre.get(), control.get()}}, target.get()}};
  std::vector<JobSpec> specs(3);
  specs[0].rules = part_rules({"attention"}, true);  // copies the embeddings
  for (size_t j = 0; j < specs.size(); ++j) {
    specs[j].weights = {1.0};
    specs[j].output = dir / "out" / ("job" + std::to_string(j));
  }
  std::vector<JobPlan> plans;
  for (size_t j = 0; j < specs.size(); ++j) plans.push_back(plan_job(inputs[j], specs[j]));
  std::vector<SharedJob> jobs;
  for (size_t j = 0; j < specs.size(); ++j) jobs.push_back({&inputs[j], &specs[j], &plans[j]});
  try {
    run_jobs(jobs);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUsage);
    EXPECT_NE(std::string(e.what()).find("cannot share a read pass"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir / "out"));
  // Grouped into passes run_jobs accepts: the control in one of its own.
  const auto passes = shared_passes(jobs);
  ASSERT_EQ(passes.size(), 2u);
  EXPECT_EQ(passes[0].size(), 2u);
  EXPECT_EQ(passes[1].front().spec, &specs[2]);
}

// stories260K (a Llama: its q/k rows are interleaved in GGUF) with Llama 3's
// rope scaling (so a GGUF output carries the generated rope_freqs tensor);
// `flip` > 0 changes the last mantissa bits of every f32 value.
fs::path llama_copy(const fs::path& out, uint8_t flip) {
  const fs::path stories = test::source_dir() / ".." / "shared" / "data" / "stories260K";
  std::string bytes = test::read_file(stories / "model.safetensors");
  uint64_t header = 0;
  std::memcpy(&header, bytes.data(), sizeof header);
  for (size_t i = 8 + header; i < bytes.size(); i += 4) bytes[i] = static_cast<char>(bytes[i] ^ (flip * (i % 7)));
  fs::create_directories(out);
  test::write_file(out / "model.safetensors", bytes);
  auto config = nlohmann::json::parse(test::read_file(stories / "config.json"));
  config["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 4.0}, {"low_freq_factor", 1.0},
                            {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 64}};
  test::write_file(out / "config.json", config.dump());
  fs::copy_file(stories / "tokens.json", out / "tokens.json");
  return out;
}

// The files of every output below `dir`, with their bytes.
std::map<std::string, std::string> files_below(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) files[fs::relative(e.path(), dir).string()] = test::read_file(e.path());
  }
  return files;
}

// GGUF outputs in one pass: quantised tensors, interleaved q/k rows (also
// where one job copies them), the generated rope_freqs and split files are
// the bytes each job writes alone.
TEST(SharedPass, GgufOutputsAreTheBytesEachJobWritesAlone) {
  if (!fs::exists(test::source_dir() / ".." / "shared" / "data" / "stories260K")) GTEST_SKIP() << "stories260K is absent";
  test::TempDir dir;
  const auto pre = ModelFolder::open(llama_copy(dir / "pre", 0).string());
  const auto post = ModelFolder::open(llama_copy(dir / "post", 1).string());
  const auto target = ModelFolder::open(llama_copy(dir / "target", 3).string());
  const JobInputs inputs{{{pre.get(), post.get()}}, target.get()};
  std::vector<JobSpec> specs(3);
  specs[0].weights = {0.5, 1.0};
  specs[1].weights = {1.0};
  specs[1].method = &merge_method("ties");
  specs[1].method_params = {{"density", ParamSetting(0.3)}};
  specs[2].weights = {1.5};
  specs[2].rules = part_rules({"mlp"}, true);  // copies q and k
  for (auto& spec : specs) {
    spec.format = OutputFormat::kGguf;
    spec.gguf_type = GgufFileType::kQ8_0;
    spec.gguf_split_bytes = 150'000;
    spec.threads = 6;  // three files at once, each running one tensor's statistics passes ahead
  }
  const auto output_to = [&](const fs::path& root) {
    for (size_t j = 0; j < specs.size(); ++j) {
      specs[j].output = root / ("job" + std::to_string(j)) / (specs[j].weights.size() == 1 ? "m.gguf" : "");
    }
  };
  output_to(dir / "alone");
  for (auto& spec : specs) run_job(inputs, spec, plan_job(inputs, spec));
  output_to(dir / "shared");
  std::vector<JobPlan> plans;
  for (const auto& spec : specs) plans.push_back(plan_job(inputs, spec));
  std::vector<SharedJob> jobs;
  for (size_t j = 0; j < specs.size(); ++j) jobs.push_back({&inputs, &specs[j], &plans[j]});
  run_jobs(jobs);
  const auto alone = files_below(dir / "alone"), shared = files_below(dir / "shared");
  EXPECT_GT(alone.size(), 6u);  // split files
  ASSERT_EQ(alone.size(), shared.size());
  for (const auto& [name, bytes] : alone) EXPECT_TRUE(shared.at(name) == bytes) << name;
}

}  // namespace
}  // namespace rvec
