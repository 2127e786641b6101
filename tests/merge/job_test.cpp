// Bit-exact tests of merge / extract / apply against an independent scalar
// reference written here (not shared with the library).
#include "merge/job.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include "base/error.hpp"
#include "base/hash.hpp"
#include "io/staging.hpp"
#include "merge/provenance.hpp"
#include "hf/synthetic.hpp"
#include "merge/open_family.hpp"
#include "merge/reference.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

namespace fs = std::filesystem;
using test::ref_decode;
using test::ref_encode;

// --- the reference -------------------------------------------------------------

// Expected bytes of tensor `name` in target + w * (post - pre), rows beyond
// the shared ones copied from the target, `scale` from the rules.
std::vector<std::byte> reference_merge(const ModelFolder& pre, const ModelFolder& post, const ModelFolder& target,
                                       const std::string& name, double w, double scale, DType out_dtype) {
  const ModelTensor* t = target.find(name);
  const ModelTensor* p = post.find_resolving_tied(name);
  const ModelTensor* q = pre.find_resolving_tied(name);
  const auto tb = t->file->map(*t->info), pb = p->file->map(*p->info), qb = q->file->map(*q->info);
  const uint64_t n = t->info->element_count();
  const uint64_t shared = std::min({n, p->info->element_count(), q->info->element_count()});
  const size_t tw = dtype_bits(t->info->dtype) / 8, pw = dtype_bits(p->info->dtype) / 8,
               qw = dtype_bits(q->info->dtype) / 8, ow = dtype_bits(out_dtype) / 8;
  const float wf = static_cast<float>(w * scale);
  std::vector<std::byte> out(n * ow);
  for (uint64_t i = 0; i < n; ++i) {
    const float tv = ref_decode(t->info->dtype, tb.data() + i * tw);
    float r = tv;
    if (i < shared && scale != 0.0) {
      const float d = ref_decode(p->info->dtype, pb.data() + i * pw) - ref_decode(q->info->dtype, qb.data() + i * qw);
      const float product = wf * d;
      r = tv + product;
    }
    ref_encode(out_dtype, r, out.data() + i * ow);
  }
  return out;
}


// --- fixtures ------------------------------------------------------------------

using Family = test::OpenFamily;
using test::tensor_bytes;

JobResult run(const JobInputs& inputs, const JobSpec& spec) { return run_job(inputs, spec, plan_job(inputs, spec)); }

JobSpec merge_spec(const fs::path& out, std::vector<double> weights) {
  JobSpec spec;
  spec.kind = JobKind::kMerge;
  spec.weights = std::move(weights);
  spec.output = out;
  spec.max_shard_bytes = 100'000;  // several shards even for the tiny shape
  return spec;
}

struct Case {
  const char* label;
  DType dtype;
  bool tied;
  uint64_t extra_rows;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.label; }

class MergeExactness : public ::testing::TestWithParam<Case> {};

TEST_P(MergeExactness, EveryOutputMatchesTheScalarReferenceBitForBit) {
  const Case c = GetParam();
  test::TempDir dir;
  FamilyOptions options;
  options.dtype = c.dtype;
  options.tied = c.tied;
  options.target_extra_rows = c.extra_rows;
  options.post_delta = 0.3;  // large enough that many elements change
  options.max_shard_bytes = 60'000;
  write_family(dir.path(), options);
  const Family fam(dir.path());
  const std::vector<double> weights = {0.25, 0.5, 1.0, 1.5};
  const auto result = run(fam.inputs(), merge_spec(dir / "out", weights));
  ASSERT_EQ(result.outputs.size(), 4u);
  for (size_t k = 0; k < weights.size(); ++k) {
    const auto out = ModelFolder::open((dir / "out" / weight_folder_name(weights[k])).string());
    EXPECT_EQ(out->tensors().size(), fam.target->tensors().size());
    EXPECT_EQ(out->tied_embeddings(), fam.target->tied_embeddings());
    for (const auto& t : fam.target->tensors()) {
      EXPECT_EQ(tensor_bytes(*out, t.name()),
                reference_merge(*fam.pre, *fam.post, *fam.target, t.name(), weights[k], 1.0, c.dtype))
          << c.label << " w=" << weights[k] << " tensor " << t.name();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Families, MergeExactness,
                         ::testing::Values(Case{"bf16 untied", DType::kBF16, false, 0},
                                           Case{"bf16 tied", DType::kBF16, true, 0},
                                           Case{"bf16 extra rows", DType::kBF16, false, 9},
                                           Case{"f16 untied", DType::kF16, false, 3},
                                           Case{"f32 tied", DType::kF32, true, 0}),
                         [](const auto& info) {
                           std::string name = info.param.label;
                           for (char& ch : name) ch = std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
                           return name;
                         });

TEST(Merge, ExtractThenApplyEqualsMergeWithAnF32Vector) {
  test::TempDir dir;
  FamilyOptions options;
  options.target_extra_rows = 4;
  write_family(dir.path(), options);
  const Family fam(dir.path());
  run(fam.inputs(), merge_spec(dir / "merged", {0.5, 1.25}));

  JobSpec extract;
  extract.kind = JobKind::kExtract;
  extract.weights = {1.0};
  extract.out_dtype = DType::kF32;
  extract.output = dir / "vector";
  run({{{fam.pre.get(), fam.post.get()}}, nullptr}, extract);
  const auto vector = ModelFolder::open((dir / "vector").string());
  EXPECT_EQ(vector->shards().front()->header().metadata.at("rvec.kind"), kVectorKind);
  EXPECT_EQ(vector->find(kEmbedName)->info->shape[0], 512u);  // the rows pre and post share

  JobSpec apply = merge_spec(dir / "applied", {0.5, 1.25});
  apply.kind = JobKind::kApply;
  run({{{nullptr, vector.get()}}, fam.target.get()}, apply);
  for (const char* w : {"w0.5", "w1.25"}) {
    const auto merged = ModelFolder::open((dir / "merged" / w).string());
    const auto applied = ModelFolder::open((dir / "applied" / w).string());
    for (const auto& t : merged->tensors()) {
      EXPECT_EQ(tensor_bytes(*merged, t.name()), tensor_bytes(*applied, t.name())) << w << " " << t.name();
    }
  }
}

TEST(Merge, RulesSkipAndRescaleTensors) {
  test::TempDir dir;
  write_family(dir.path(), {});
  const Family fam(dir.path());
  JobSpec spec = merge_spec(dir / "out", {1.0});
  spec.rules.push_back(TensorRule::skip("norm|embed_tokens"));
  spec.rules.push_back(TensorRule::layers("1-1=0.5"));
  run(fam.inputs(), spec);
  const auto out = ModelFolder::open((dir / "out").string());
  for (const auto& t : fam.target->tensors()) {
    const std::string& name = t.name();
    const bool skipped = name.find("norm") != std::string::npos || name.find("embed_tokens") != std::string::npos;
    const double scale = skipped ? 0.0 : name.rfind("model.layers.1.", 0) == 0 ? 0.5 : 1.0;
    EXPECT_EQ(tensor_bytes(*out, name), reference_merge(*fam.pre, *fam.post, *fam.target, name, 1.0, scale, DType::kBF16))
        << name;
  }
}

// Ablations: the named parts of a vector agree with the tensor-name table's
// kinds, and keeping some parts leaves every other tensor as in the target.
TEST(Merge, PartRulesFollowTheTensorNameTable) {
  const auto kept = [](const std::vector<std::string>& parts, bool keep, const std::string& name) {
    const std::vector<TensorRule> rules = part_rules(parts, keep);
    const TensorRule* rule = first_match(rules, name);
    return rule ? rule->scale() : 1.0;
  };
  for (const uint64_t layer : {0u, 3u, 12u}) {
    for (const auto& t : kLayerTensors) {
      const std::string name = layer_tensor_name(layer, t.suffix);
      const bool attention = t.kind == ModuleKind::kAttnQ || t.kind == ModuleKind::kAttnK ||
                             t.kind == ModuleKind::kAttnV || t.kind == ModuleKind::kAttnO;
      EXPECT_EQ(kept({"attention"}, true, name), attention ? 1.0 : 0.0) << name;
      EXPECT_EQ(kept({"mlp"}, true, name), t.kind == ModuleKind::kMlp ? 1.0 : 0.0) << name;
      EXPECT_EQ(kept({"norms"}, true, name), t.kind == ModuleKind::kNorms ? 1.0 : 0.0) << name;
      EXPECT_EQ(kept({"layer 3"}, true, name), layer == 3 ? 1.0 : 0.0) << name;
      EXPECT_EQ(kept({"layers 3-12", "mlp"}, true, name), layer >= 3 || t.kind == ModuleKind::kMlp ? 1.0 : 0.0);
      EXPECT_EQ(kept({"embeddings"}, false, name), 1.0) << name;
      EXPECT_EQ(kept({"attention", "layer 0"}, false, name), attention || layer == 0 ? 0.0 : 1.0) << name;
    }
  }
  for (const auto name : {kEmbedName, kLmHeadName}) {
    EXPECT_EQ(kept({"embeddings"}, true, std::string(name)), 1.0);
    EXPECT_EQ(kept({"embeddings"}, false, std::string(name)), 0.0);
    EXPECT_EQ(kept({"attention", "mlp", "norms", "layers 0-99"}, true, std::string(name)), 0.0);
  }
  EXPECT_EQ(kept({"norms"}, true, std::string(kFinalNormName)), 1.0);
  EXPECT_EQ(kept({"mlp"}, true, "model.layers.0.mlp.up_proj.weight.extra"), 0.0);  // anchored
  EXPECT_FALSE(part_rule("attn", 1.0));
  EXPECT_THROW(part_rules({"mlp", "head"}, true), Error);
  EXPECT_THROW(part_rule("layer x", 1.0), Error);
}

TEST(Merge, KeepingAPartOfTheVectorLeavesTheRestAsInTheTarget) {
  test::TempDir dir;
  write_family(dir.path(), {});
  const Family fam(dir.path());
  JobSpec spec = merge_spec(dir / "out", {1.0});
  spec.rules = part_rules({"mlp", "layer 0"}, true);
  run(fam.inputs(), spec);
  const auto out = ModelFolder::open((dir / "out").string());
  for (const auto& t : fam.target->tensors()) {
    const std::string& name = t.name();
    const bool kept = module_kind(name) == ModuleKind::kMlp || layer_index(name) == 0u;
    EXPECT_EQ(tensor_bytes(*out, name),
              reference_merge(*fam.pre, *fam.post, *fam.target, name, 1.0, kept ? 1.0 : 0.0, DType::kBF16))
        << name;
  }
}

TEST(Merge, OutputIsTheTargetsModelWithProvenanceAndCard) {
  test::TempDir dir;
  write_family(dir.path(), {});
  test::write_file(dir / "post" / "tokenizer_config.json", R"({"chat_template": "post's, must not be copied"})");
  test::write_file(dir / "target" / "chat_template.jinja", "target's template");
  const Family fam(dir.path());
  JobSpec spec = merge_spec(dir / "out", {0.5});
  spec.out_dtype = DType::kF32;
  spec.command_line = "rvec merge ...";
  spec.recipe_text = "kind: merge\n";
  run(fam.inputs(), spec);
  const fs::path out = dir / "out";
  EXPECT_EQ(test::read_file(out / "tokenizer_config.json"), test::read_file(dir / "target" / "tokenizer_config.json"));
  EXPECT_EQ(test::read_file(out / "chat_template.jinja"), "target's template");
  EXPECT_EQ(test::read_file(out / "rvec_recipe.yaml"), "kind: merge\n");
  const auto config = nlohmann::json::parse(test::read_file(out / "config.json"));
  EXPECT_EQ(config["torch_dtype"], "float32");
  const auto prov = nlohmann::json::parse(test::read_file(out / kProvenanceFile));
  EXPECT_EQ(prov["w"], 0.5);
  EXPECT_EQ(prov["command"], "rvec merge ...");
  EXPECT_EQ(prov["inputs"]["pre"]["shards"].size(), fam.pre->shards().size());
  EXPECT_EQ(prov["inputs"]["target"]["shards"][0]["header_fnv1a64"].get<std::string>().size(), 16u);
  const std::string card = test::read_file(out / "README.md");
  EXPECT_EQ(card.rfind("---\nbase_model:\n- target\n- post\n- pre\n", 0), 0u) << card;
  const auto model = ModelFolder::open(out.string());
  EXPECT_EQ(model->shards().front()->header().metadata.at("rvec.w"), "0.5");
  EXPECT_EQ(model->find("model.norm.weight")->info->dtype, DType::kF32);
  EXPECT_FALSE(fs::exists(staging_path_for(out)));
}

TEST(Merge, IncompatibleModelsAreRefusedBeforeWritingAnything) {
  test::TempDir dir, other;
  write_family(dir.path(), {});
  FamilyOptions f16;
  f16.dtype = DType::kF16;
  write_family(other.path(), f16);
  Family fam(dir.path());
  fam.post = ModelFolder::open((other / "post").string());
  try {
    run(fam.inputs(), merge_spec(dir / "out", {0.5}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kIncompatible);
    EXPECT_NE(std::string(e.what()).find("dtype differs"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir / "out"));
  EXPECT_FALSE(fs::exists(staging_path_for(dir / "out")));
}

TEST(Merge, NewInfinitiesAreReportedWithTheTensorName) {
  test::TempDir dir;
  FamilyOptions f16;
  f16.dtype = DType::kF16;  // largest finite value 65504
  write_family(dir.path(), f16);
  const Family fam(dir.path());
  EXPECT_THROW(run(fam.inputs(), merge_spec(dir / "refused", {1e12})), Error);  // by default
  JobSpec spec = merge_spec(dir / "out", {1e12});
  spec.max_new_nonfinite = std::numeric_limits<uint64_t>::max();
  const auto result = run(fam.inputs(), spec);
  ASSERT_FALSE(result.outputs[0].nonfinite.empty());
  EXPECT_FALSE(result.outputs[0].nonfinite[0].first.empty());
  const auto prov = nlohmann::json::parse(test::read_file(dir / "out" / kProvenanceFile));
  EXPECT_FALSE(prov["new_nonfinite_values"].empty());
}

TEST(Merge, RerunningAFinishedJobReusesItAndAChangedJobIsRefused) {
  test::TempDir dir;
  write_family(dir.path(), {});
  const Family fam(dir.path());
  run(fam.inputs(), merge_spec(dir / "out", {0.5, 1.0}));
  const auto again = run(fam.inputs(), merge_spec(dir / "out", {0.5, 1.0}));
  EXPECT_TRUE(again.outputs[0].already_complete);
  EXPECT_EQ(again.bytes_written, 0u);
  JobSpec changed = merge_spec(dir / "out", {0.5, 1.0});
  changed.rules.push_back(TensorRule::skip("norm"));
  try {
    run(fam.inputs(), changed);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUsage);
    EXPECT_NE(std::string(e.what()).find("not made by this job"), std::string::npos) << e.what();
  }
}

// The key of a task-arithmetic output as rvec wrote it before merge methods
// existed, rebuilt here field by field: outputs made then are still recognised.
nlohmann::ordered_json key_before_methods(const JobInputs& inputs, const JobSpec& spec, double w) {
  const auto model = [](const ModelFolder& m) {
    nlohmann::ordered_json shards = nlohmann::ordered_json::array();
    for (const auto& shard : m.shards()) {
      shards.push_back({{"file", fs::path(shard->path()).filename().string()},
                        {"bytes", shard->file_size()},
                        {"modified_ns", shard->modified_ns()},
                        {"header_fnv1a64", hex64(shard->header().json_hash)}});
    }
    return nlohmann::ordered_json{
        {"path", fs::absolute(m.path()).lexically_normal().string()},
        {"architecture", m.config()->architecture()},
        {"config_fnv1a64", hex64(fnv1a64(test::read_file(fs::path(m.path()) / "config.json")))},
        {"shards", shards}};
  };
  return {
      {"rvec", RVEC_VERSION},
      {"kind", "merge"},
      {"w", w},
      {"rules", nlohmann::ordered_json::array()},
      {"dtype", "default"},
      {"max_shard_bytes", spec.max_shard_bytes},
      {"inputs",
       {{"pre", model(*inputs.vectors[0].pre)}, {"post", model(*inputs.vectors[0].post)}, {"target", model(*inputs.target)}}}};
}

std::string fingerprint_before_methods(const JobInputs& inputs, const JobSpec& spec, double w) {
  return hex64(fnv1a64(key_before_methods(inputs, spec, w).dump()));
}

TEST(Merge, PlainTaskArithmeticKeepsItsFingerprintAndEverythingElseChangesIt) {
  test::TempDir dir;
  write_family(dir.path(), {});
  const Family fam(dir.path());
  const JobSpec plain = merge_spec(dir / "out", {0.5});
  const std::string before = fingerprint_before_methods(fam.inputs(), plain, 0.5);
  EXPECT_EQ(output_fingerprint(fam.inputs(), plain, 0.5), before);
  const auto spec = [&](const char* method, ParamSettings params, std::vector<ParamSettings> vectors) {
    JobSpec s = merge_spec(dir / "out", {0.5});
    if (method) s.method = &merge_method(method);
    s.method_params = std::move(params);
    s.vector_params = std::move(vectors);
    return output_fingerprint(fam.inputs(), s, 0.5);
  };
  // The default method named, its defaults given: the same job.
  EXPECT_EQ(spec("task_arithmetic", {{"normalize", ParamSetting::word("false")}}, {{{"weight", 1.0}}}), before);
  std::set<std::string> fingerprints = {before};
  for (const auto& other : {spec("ties", {}, {}), spec("ties", {{"density", 0.5}}, {}),
                            spec(nullptr, {}, {{{"weight", 0.5}}}),
                            spec(nullptr, {{"normalize", ParamSetting::word("true")}}, {})}) {
    EXPECT_TRUE(fingerprints.insert(other).second);
  }
}

// Settings print whole numbers as integers ("seed": 7) since stop 33; the
// fingerprint keeps writing them as doubles, as the outputs made before were keyed.
TEST(Merge, AMethodJobKeepsItsFingerprintWhileItsSettingsPrintWholeNumbers) {
  test::TempDir dir;
  write_family(dir.path(), {});
  const Family fam(dir.path());
  JobSpec spec = merge_spec(dir / "out", {0.5});
  spec.method = &merge_method("dare_ties");
  spec.method_params = {{"density", 0.5}, {"seed", 7.0}};
  spec.vector_params = {{{"weight", ParamSetting::gradient({1, -0.0, 0.5})}}};  // -0.0 was keyed as such
  EXPECT_EQ(settings_json(spec.method_params).dump(), R"({"density":0.5,"seed":7})");
  EXPECT_EQ(settings_json(spec.vector_params[0]).dump(), R"({"weight":[1,-0.0,0.5]})");
  nlohmann::ordered_json key = key_before_methods(fam.inputs(), spec, 0.5);
  key["method"] = {{"name", "dare_ties"}, {"params", {{"density", 0.5}, {"seed", 7.0}}}};
  key["vectors"] = nlohmann::ordered_json::array({{{"weight", {1.0, -0.0, 0.5}}}});
  EXPECT_EQ(output_fingerprint(fam.inputs(), spec, 0.5), hex64(fnv1a64(key.dump())));
}

TEST(Merge, BadWeightsAreUsageErrors) {
  test::TempDir dir;
  write_family(dir.path(), {});
  const Family fam(dir.path());
  EXPECT_THROW(plan_job(fam.inputs(), merge_spec(dir / "out", {})), Error);
  EXPECT_THROW(plan_job(fam.inputs(), merge_spec(dir / "out", {0.5, 0.5})), Error);
  EXPECT_THROW(plan_job(fam.inputs(), merge_spec(dir / "out", {NAN})), Error);
  EXPECT_THROW(plan_job(fam.inputs(), merge_spec(dir / "out", {1e300})), Error);  // not an f32
  // Weights that are one f32 number made two outputs of one merge.
  for (const std::vector<double>& same : {std::vector<double>{1, 1.00000001}, {0, -0.0}, {1e-46, 0}}) {
    try {
      plan_job(fam.inputs(), merge_spec(dir / "out", same));
      ADD_FAILURE() << same[0] << ", " << same[1] << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("are the same f32 number, so the same merge"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace rvec

namespace rvec {
namespace {

// What storing the vector in BF16 costs, measured against the exact merge.
TEST(Merge, Bf16VectorStorageChangesFewElementsByAtMostOneSpacing) {
  test::TempDir dir;
  write_family(dir.path(), {});
  const Family fam(dir.path());
  run(fam.inputs(), merge_spec(dir / "merged", {1.0}));
  JobSpec extract;
  extract.kind = JobKind::kExtract;
  extract.weights = {1.0};
  extract.output = dir / "vector";  // default dtype: the inputs' (BF16)
  run({{{fam.pre.get(), fam.post.get()}}, nullptr}, extract);
  const auto vector = ModelFolder::open((dir / "vector").string());
  EXPECT_EQ(vector->tensors().front().info->dtype, DType::kBF16);
  JobSpec apply = merge_spec(dir / "applied", {1.0});
  apply.kind = JobKind::kApply;
  run({{{nullptr, vector.get()}}, fam.target.get()}, apply);
  const auto merged = ModelFolder::open((dir / "merged").string());
  const auto applied = ModelFolder::open((dir / "applied").string());
  uint64_t total = 0, differ = 0;
  double worst = 0;  // largest |difference| in bf16 spacings at the magnitude involved
  for (const auto& t : merged->tensors()) {
    const auto a = tensor_bytes(*merged, t.name()), b = tensor_bytes(*applied, t.name()), c = tensor_bytes(*fam.target, t.name());
    for (size_t i = 0; i + 1 < a.size(); i += 2) {
      ++total;
      const float x = ref_decode(DType::kBF16, &a[i]), y = ref_decode(DType::kBF16, &b[i]);
      if (x == y) continue;
      ++differ;
      // |d| <= |target| + |out|, so the spacing at twice the largest of them bounds the storage error.
      const float largest = std::max({std::fabs(ref_decode(DType::kBF16, &c[i])), std::fabs(x), std::fabs(y)});
      const double spacing = std::ldexp(1.0, std::ilogb(2 * std::max(largest, 1e-30f)) - 7);
      worst = std::max(worst, std::fabs(static_cast<double>(x) - y) / spacing);
    }
  }
  const double fraction = static_cast<double>(differ) / static_cast<double>(total);
  std::cout << "bf16 vector: " << differ << " of " << total << " elements differ from the exact merge ("
            << 100.0 * fraction << " %), by at most " << worst << " bf16 spacing(s) at the magnitude involved\n";
  RecordProperty("differing_fraction", std::to_string(fraction));
  EXPECT_GT(differ, 0u);  // the loss is real...
  EXPECT_LT(fraction, 0.05);  // ...but small
  EXPECT_LE(worst, 1.0);
}

}  // namespace
}  // namespace rvec
