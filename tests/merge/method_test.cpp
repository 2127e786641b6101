// The merge-method seam: a method written here, outside the library, runs
// through the same executor as task arithmetic, statistics pass included;
// the registry validates parameters; several vectors combine as specified.
#include "merge/method.hpp"

#include <gtest/gtest.h>

#include <cstring>

#include "base/error.hpp"
#include "hf/synthetic.hpp"
#include "io/async_sink.hpp"
#include "merge/executor.hpp"
#include "merge/job.hpp"
#include "merge/provenance.hpp"
#include "numeric/codec.hpp"
#include "merge/open_family.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

namespace fs = std::filesystem;

// δ = 2 d, but only after observe() has seen every element of the tensor
// exactly once in each of two passes: a stand-in for the top-k methods that
// need a threshold first.
class DoublingCombiner final : public TensorCombiner {
 public:
  explicit DoublingCombiner(uint64_t elements) : elements_(elements) {}
  void observe(unsigned pass, size_t vector, uint64_t first, std::span<const float> delta) override {
    if (pass != passes_ended_ || vector != 0 || first != observed_) throw std::logic_error("observe() out of order");
    observed_ += delta.size();
  }
  void end_pass(unsigned pass) override {
    if (pass != passes_ended_ || observed_ != elements_) throw std::logic_error("end_pass() too early");
    ++passes_ended_;
    observed_ = 0;
  }
  const float* combine(uint64_t, size_t n, std::span<const float* const> deltas, float* scratch) override {
    if (passes_ended_ != 2) throw std::logic_error("combine() before the statistics passes ended");
    for (size_t j = 0; j < n; ++j) scratch[j] = 2.0f * deltas[0][j];
    return scratch;
  }

 private:
  uint64_t elements_;
  uint64_t observed_ = 0;
  unsigned passes_ended_ = 0;
};

class Doubling final : public MergeMethod {
 public:
  std::string_view name() const override { return "doubling"; }
  const std::vector<MethodParam>& params() const override {
    static const std::vector<MethodParam> params = {{"density", 1.0, 0.0, 1.0, "share of elements kept"}};
    return params;
  }
  std::string formula() const override { return "2 * v"; }
  unsigned statistics_passes(const TensorContext&) const override { return 2; }
  std::unique_ptr<TensorCombiner> begin_tensor(const TensorContext& context) const override {
    return std::make_unique<DoublingCombiner>(context.elements);
  }
};

using Family = test::OpenFamily;
using test::tensor_bytes;

TEST(MergeMethod, AMethodWithAStatisticsPassRunsThroughTheJobExecutor) {
  test::TempDir dir;
  FamilyOptions options;
  options.post_delta = 0.3;
  options.max_shard_bytes = 60'000;
  write_family(dir.path(), options);
  const Family fam(dir.path());
  const Doubling doubling;

  const auto spec_for = [&](std::vector<double> weights, const char* output, const MergeMethod* method) {
    JobSpec spec;
    spec.weights = std::move(weights);
    spec.output = dir / output;
    spec.max_shard_bytes = 60'000;
    spec.method = method;
    return spec;
  };
  const JobSpec spec = spec_for({0.25, 0.5}, "doubled", &doubling);
  const JobPlan plan = plan_job(fam.inputs(), spec);
  uint64_t last_progress = 0;
  const JobResult result = run_job(fam.inputs(), spec, plan, [&](uint64_t read, uint64_t) { last_progress = read; });
  EXPECT_EQ(result.bytes_read, plan.bytes_to_read);  // the vectors are read three times
  EXPECT_EQ(last_progress, plan.bytes_to_read);

  const JobSpec plain = spec_for({0.5, 1.0}, "plain", nullptr);
  const JobResult plain_result = run_job(fam.inputs(), plain, plan_job(fam.inputs(), plain));
  EXPECT_LT(plain_result.bytes_read, result.bytes_read);

  // w * (2 d) and (2 w) * d round identically: 2 is a power of two.
  for (const auto& [doubled, single] : {std::pair{"w0.25", "w0.5"}, std::pair{"w0.5", "w1"}}) {
    const auto a = ModelFolder::open((dir / "doubled" / doubled).string());
    const auto b = ModelFolder::open((dir / "plain" / single).string());
    for (const auto& t : fam.target->tensors()) EXPECT_EQ(tensor_bytes(*a, t.name()), tensor_bytes(*b, t.name())) << t.name();
  }
  const auto provenance = test::read_file(dir / "doubled" / "w0.5" / kProvenanceFile);
  EXPECT_NE(provenance.find("target + w * doubling(post - pre)"), std::string::npos);
  EXPECT_NE(provenance.find("\"density\": 1.0"), std::string::npos) << provenance;
}

TEST(MergeMethod, ParametersAreCheckedAgainstTheMethodsDeclaration) {
  const Doubling doubling;
  EXPECT_EQ(complete_params(doubling, {}).at("density"), 1.0);
  EXPECT_EQ(complete_params(doubling, {{"density", 0.25}}).at("density"), 0.25);
  EXPECT_THROW(complete_params(doubling, {{"density", 1.5}}), Error);
  EXPECT_THROW(complete_params(doubling, {{"gamma", 0.1}}), Error);
  EXPECT_THROW(merge_method("nonsense"), Error);
  EXPECT_EQ(merge_method("task_arithmetic").name(), "task_arithmetic");
}

// Tensor `name` of `f` merged whole into bf16: target + w * (post - pre).
TensorTask whole_tensor_task(const Family& f, const std::string& name) {
  TensorTask task;
  task.name = name;
  task.out_dtype = DType::kBF16;
  task.out_shape = f.target->find(name)->info->shape;
  task.base = f.target->find(name);
  task.vectors = {{f.post->find(name), f.pre->find(name), 1.0}};
  task.combined_elements = task.element_count();
  return task;
}

// Two vectors with weights 0.5 and -0.25 into a file, checked against
// round(t + f32(w * (f32(0.5 d1) + f32(-0.25 d2)))) computed here.
TEST(MergeMethod, TaskArithmeticSumsSeveralVectorsInF32) {
  test::TempDir dir;
  FamilyOptions options;
  options.dtype = DType::kF32;
  options.post_delta = 0.3;
  write_family(dir / "a", options);
  options.seed = 2;
  write_family(dir / "b", options);
  const Family a(dir / "a"), b(dir / "b");
  const std::string name = "model.layers.1.mlp.up_proj.weight";
  TensorTask task = whole_tensor_task(a, name);
  task.vectors = {{a.post->find(name), a.pre->find(name), 0.5}, {b.post->find(name), b.pre->find(name), -0.25}};

  const double w = 0.75;
  SafetensorsWriter writer((dir / "out.safetensors").string(), {{name, DType::kBF16, task.out_shape}}, {});
  {
    AsyncSink sink(4, kMergeBlockElements * 4);
    const MethodParams params;
    TaskExecutor executor(merge_method("task_arithmetic"), params, {w}, sink, {&writer});
    executor.run(task, [](uint64_t) {});
    sink.drain();
  }
  writer.finish();
  const auto out = ModelFolder::open((dir / "out.safetensors").string());
  const auto got = tensor_bytes(*out, name);
  const auto value = [](const ModelTensor* t, uint64_t i) {
    float f;
    std::memcpy(&f, t->file->map(*t->info).data() + 4 * i, 4);
    return f;
  };
  for (uint64_t i = 0; i < task.element_count(); ++i) {
    const float d1 = value(a.post->find(name), i) - value(a.pre->find(name), i);
    const float d2 = value(b.post->find(name), i) - value(b.pre->find(name), i);
    const float delta = 0.5f * d1 + -0.25f * d2;
    const float expected = value(a.target->find(name), i) + static_cast<float>(w) * delta;
    std::byte encoded[2];
    encode_from_f32(DType::kBF16, std::span(&expected, 1), encoded);
    ASSERT_EQ(std::memcmp(encoded, got.data() + 2 * i, 2), 0) << "element " << i;
  }
}

// A row with more tasks than the executor has output groups is refused
// before anything is read; the read path and the look-ahead once walked it
// first, indexing past the groups (the test then saw a stray map::at).
TEST(MergeMethod, RunAllRefusesARowWithMoreTasksThanGroups) {
  test::TempDir dir;
  write_family(dir / "a", {});
  const Family a(dir / "a");
  const std::string name = "model.layers.1.mlp.up_proj.weight";
  const TensorTask task = whole_tensor_task(a, name);
  SafetensorsWriter writer((dir / "out.safetensors").string(), {{name, DType::kBF16, task.out_shape}}, {});
  AsyncSink sink(4, kMergeBlockElements * 4);
  const MethodParams params;
  TaskExecutor executor(merge_method("ties"), params, {1.0}, sink, {&writer});
  const std::vector<TaskRow> rows = {{&task, &task}};
  for (const unsigned lookahead : {0u, 1u}) {
    try {
      executor.run_all(rows, lookahead, [](uint64_t) {});
      ADD_FAILURE() << "a row of two tasks for one group was run";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kUsage) << e.what();
      EXPECT_NE(std::string(e.what()).find("tensor row 0 has 2 tasks for 1 output groups"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace rvec
