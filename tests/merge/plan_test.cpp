#include "merge/plan.hpp"

#include <gtest/gtest.h>

#include "hf/synthetic.hpp"
#include "merge/open_family.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

namespace fs = std::filesystem;


bool has_finding(const MergePlan& plan, Severity severity, const std::string& needle) {
  for (const auto& f : plan.findings) {
    if (f.severity == severity && (f.subject + ": " + f.message).find(needle) != std::string::npos) return true;
  }
  return false;
}

std::string describe(const MergePlan& plan) {
  std::string out;
  for (const auto& f : plan.findings) out += std::string(severity_name(f.severity)) + " " + f.subject + ": " + f.message + "\n";
  return out;
}

void edit_config(const fs::path& model, const std::string& key, const nlohmann::json& value) {
  auto config = nlohmann::json::parse(test::read_file(model / "config.json"));
  config[key] = value;
  test::write_file(model / "config.json", config.dump());
}

TEST(MergePlan, GeneratedFamilyIsCompatibleAndCombinesEverything) {
  test::TempDir dir;
  write_family(dir.path(), {});
  const auto family = test::OpenFamily(dir.path());
  const auto plan = family.plan();
  EXPECT_TRUE(plan.compatible()) << describe(plan);
  EXPECT_TRUE(plan.findings.empty()) << describe(plan);
  ASSERT_EQ(plan.tensors.size(), 27u);
  for (const auto& t : plan.tensors) {
    EXPECT_EQ(t.action, TensorAction::kCombine) << t.name();
    EXPECT_EQ(t.combined_rows, t.rows());
  }
}

TEST(MergePlan, ArchitectureMismatchIsAnErrorNamingTheField) {
  test::TempDir dir;
  write_family(dir.path(), {});
  edit_config(dir / "post", "num_key_value_heads", 4);
  const auto plan = test::OpenFamily(dir.path()).plan();
  EXPECT_FALSE(plan.compatible());
  EXPECT_TRUE(has_finding(plan, Severity::kError, "field \"num_key_value_heads\" differs")) << describe(plan);
}

TEST(MergePlan, RopeThetaDifferenceIsAWarning) {
  test::TempDir dir;
  write_family(dir.path(), {});
  edit_config(dir / "target", "rope_theta", 10000.0);
  const auto plan = test::OpenFamily(dir.path()).plan();
  EXPECT_TRUE(plan.compatible());
  EXPECT_TRUE(has_finding(plan, Severity::kWarning, "rope_theta")) << describe(plan);
}

TEST(MergePlan, DifferentFamiliesAreIncompatibleTensorByTensor) {
  test::TempDir tiny, other;
  write_family(tiny.path(), {});
  FamilyOptions options;
  options.tied = true;
  write_family(other.path(), options);
  // post from a tied family: lm_head resolves to its embedding, so this still matches...
  auto fam = test::OpenFamily(tiny.path());
  fam.post = ModelFolder::open((other / "post").string());
  EXPECT_TRUE(fam.plan().compatible()) << describe(fam.plan());
  EXPECT_TRUE(has_finding(fam.plan(), Severity::kNote, "their embedding stands in")) << describe(fam.plan());
  // ...but a tied target drops post's lm_head delta: a warning, not an error.
  auto tied_target = test::OpenFamily(tiny.path());
  tied_target.target = ModelFolder::open((other / "target").string());
  EXPECT_TRUE(tied_target.plan().compatible()) << describe(tied_target.plan());
  EXPECT_TRUE(has_finding(tied_target.plan(), Severity::kWarning, "lm_head change is dropped"));
}

TEST(MergePlan, ShapeDtypeAndMissingTensorsAreErrors) {
  test::TempDir a, b, c;
  write_family(a.path(), {});
  FamilyOptions f16;
  f16.dtype = DType::kF16;
  write_family(b.path(), f16);
  FamilyOptions small;
  small.shape = "0.5b";
  small.sparse = true;
  write_family(c.path(), small);

  auto dtype_mix = test::OpenFamily(a.path());
  dtype_mix.post = ModelFolder::open((b / "post").string());
  EXPECT_TRUE(has_finding(dtype_mix.plan(), Severity::kError, "dtype differs: target BF16 vs post")) << describe(dtype_mix.plan());

  auto shape_mix = test::OpenFamily(a.path());
  shape_mix.pre = ModelFolder::open((c / "pre").string());
  const auto plan = shape_mix.plan();
  EXPECT_FALSE(plan.compatible());
  EXPECT_TRUE(has_finding(plan, Severity::kError, "shape differs")) << describe(plan);
  EXPECT_TRUE(has_finding(plan, Severity::kError, "is in pre")) << describe(plan);  // 24 layers vs 2
}

TEST(MergePlan, ExtraTargetVocabularyRowsAreKept) {
  test::TempDir dir;
  FamilyOptions options;
  options.target_extra_rows = 7;
  write_family(dir.path(), options);
  const auto family = test::OpenFamily(dir.path());
  const auto plan = family.plan();
  EXPECT_TRUE(plan.compatible()) << describe(plan);
  for (const auto& t : plan.tensors) {
    if (t.name() == kEmbedName || t.name() == kLmHeadName) {
      EXPECT_EQ(t.rows(), 519u);
      EXPECT_EQ(t.combined_rows, 512u);
      EXPECT_NE(t.note.find("other 7 rows are kept unchanged"), std::string::npos) << t.note;
    }
  }
  EXPECT_TRUE(has_finding(plan, Severity::kNote, "vocab_size")) << describe(plan);
}

TEST(MergePlan, QuantisedTargetTensorIsAnError) {
  test::TempDir dir;
  const std::string header = R"({"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]},)"
                             R"("n":{"dtype":"I64","shape":[1],"data_offsets":[2,10]}})";
  for (const char* m : {"pre", "post", "target"}) {
    fs::create_directories(dir / m);
    test::write_file(dir / m / "model.safetensors", test::raw_safetensors(header, std::string(10, '\0')));
  }
  const auto family = test::OpenFamily(dir.path());
  const auto plan = family.plan();
  EXPECT_TRUE(has_finding(plan, Severity::kError, "F8_E4M3, which rvec cannot do arithmetic on")) << describe(plan);
  ASSERT_EQ(plan.tensors.size(), 2u);
  EXPECT_EQ(plan.tensors[0].action, TensorAction::kCopyTarget);  // I64: copied
  EXPECT_TRUE(has_finding(plan, Severity::kWarning, "no config.json"));
}

}  // namespace
}  // namespace rvec
