#include "merge/lineage.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <random>

#include "hf/synthetic.hpp"
#include "io/safetensors.hpp"
#include "merge/open_family.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

namespace fs = std::filesystem;

using Trio = test::OpenFamily;

LineageReport analyse(const Trio& trio, const std::vector<const ModelFolder*>& candidates = {}) {
  const MergePlan plan = trio.plan();
  EXPECT_TRUE(plan.compatible());
  return analyse_lineage(plan, candidates);
}

fs::path family(const fs::path& dir, FamilyOptions options) {
  write_family(dir, options);
  return dir;
}

TEST(Lineage, PostDerivedFromPrePasses) {
  test::TempDir dir;
  const Trio trio(family(dir.path(), {}));
  const auto r = analyse(trio);
  EXPECT_EQ(r.post_verdict, LineageVerdict::kFineTune);
  EXPECT_EQ(r.target_verdict, LineageVerdict::kFineTune);
  EXPECT_NEAR(r.matrices.rel_post(), 0.02, 0.002);  // the generator's delta size
  EXPECT_FALSE(r.deltas_overlap);
  EXPECT_LT(std::fabs(r.matrices.cosine()), 0.1);
  EXPECT_EQ(r.tensors.size(), 27u);
  EXPECT_EQ(r.by_layer.size(), 2u);
  EXPECT_TRUE(r.by_kind.contains("attn_q"));
  EXPECT_TRUE(r.by_kind.contains("norms"));
}

constexpr uint16_t kBf16Inf = 0x7F80;
using test::poison;

TEST(Lineage, NaNWeightsAreAFindingNotAFineTune) {
  test::TempDir dir;
  family(dir.path(), {});
  poison(dir / "post" / "model.safetensors", "model.layers.1.mlp.up_proj.weight", 5);
  const Trio trio(dir.path());
  const auto r = analyse(trio);
  EXPECT_EQ(r.post_verdict, LineageVerdict::kNonFinite);
  ASSERT_TRUE(r.nonfinite.contains("post"));
  EXPECT_EQ(r.nonfinite.at("post").count, 5u);
  EXPECT_EQ(r.nonfinite.at("post").first_tensor, "model.layers.1.mlp.up_proj.weight");
  EXPECT_FALSE(r.nonfinite.contains("pre"));

  const auto cli = test::run_rvec("check --deep " + (dir / "pre").string() + " " + (dir / "post").string() + " " +
                                  (dir / "target").string());
  EXPECT_EQ(cli.exit_code, 3) << cli.output;
  EXPECT_NE(cli.output.find("post: 5 NaN/Inf weight values (the first in model.layers.1.mlp.up_proj.weight)"),
            std::string::npos)
      << cli.output;
  EXPECT_EQ(cli.output.find("looks like a fine-tune of pre\nlineage ||target"), std::string::npos) << cli.output;
}

// Inf weights made every cosine NaN, and the overlap line still concluded
// "the two fine-tunes are largely independent".
TEST(Lineage, InfWeightsAreAFindingAndNothingIsConcludedFromThem) {
  test::TempDir dir;
  family(dir.path(), {});
  poison(dir / "post" / "model.safetensors", "model.layers.0.mlp.up_proj.weight", 3, kBf16Inf);
  const auto r = analyse(Trio(dir.path()));
  EXPECT_EQ(r.post_verdict, LineageVerdict::kNonFinite);
  ASSERT_TRUE(r.nonfinite.contains("post"));
  EXPECT_EQ(r.nonfinite.at("post").count, 3u);

  const auto cli = test::run_rvec("check --deep " + (dir / "pre").string() + " " + (dir / "post").string() + " " +
                                  (dir / "target").string());
  EXPECT_EQ(cli.exit_code, 3) << cli.output;
  EXPECT_NE(cli.output.find("post: 3 NaN/Inf weight values"), std::string::npos) << cli.output;
  EXPECT_NE(cli.output.find("overlap cos(post-pre, target-pre) = nan: cannot be judged: the weights hold NaN or Inf"),
            std::string::npos)
      << cli.output;
  EXPECT_EQ(cli.output.find("largely independent"), std::string::npos) << cli.output;
}

TEST(Lineage, PostFromAnotherParentFailsClearly) {
  test::TempDir dir;
  FamilyOptions options;
  options.unrelated_post = true;
  const Trio trio(family(dir.path(), options));
  const auto r = analyse(trio);
  EXPECT_EQ(r.post_verdict, LineageVerdict::kUnrelated);
  EXPECT_NEAR(r.matrices.rel_post(), std::sqrt(2.0), 0.05);  // two independent draws of equal scale
  EXPECT_EQ(r.target_verdict, LineageVerdict::kFineTune);
}

TEST(Lineage, TargetDerivedFromPostShowsOverlappingDeltas) {
  test::TempDir from_pre, from_post;
  const Trio independent(family(from_pre.path(), {}));
  FamilyOptions options;
  options.target_from_post = true;
  const Trio chained(family(from_post.path(), options));
  EXPECT_FALSE(analyse(independent).deltas_overlap);
  const auto r = analyse(chained);
  EXPECT_TRUE(r.deltas_overlap);
  EXPECT_NEAR(r.matrices.cosine(), 1 / std::sqrt(2.0), 0.05);  // equal-sized deltas, one shared
}

TEST(Lineage, TheRightParentRanksFirst) {
  test::TempDir dir, other;
  const Trio trio(family(dir.path(), {}));
  FamilyOptions elsewhere;
  elsewhere.seed = 99;
  family(other.path(), elsewhere);
  const auto wrong_pre = ModelFolder::open((other / "pre").string());
  const auto wrong_post = ModelFolder::open((other / "post").string());
  const auto r = analyse(trio, {wrong_pre.get(), trio.target.get(), trio.pre.get(), wrong_post.get()});
  ASSERT_EQ(r.candidates.size(), 4u);
  EXPECT_EQ(r.candidates[0].path, trio.pre->path());
  EXPECT_EQ(r.candidates[1].path, trio.target->path());  // a sibling: twice the distance
  EXPECT_GT(r.candidates[2].rel_post, 1.0);               // unrelated seeds
  EXPECT_EQ(r.candidates[0].tensors_skipped, 0u);
}

// Independent double-precision computation over the decoded values.
TEST(Lineage, NumbersMatchAnIndependentDoubleComputation) {
  test::TempDir dir;
  FamilyOptions options;
  options.dtype = DType::kF32;
  options.target_from_post = true;
  const Trio trio(family(dir.path(), options));
  const auto r = analyse(trio);
  for (const auto& t : r.tensors) {
    const auto load = [&](const ModelFolder& m) {
      const ModelTensor* mt = m.find_resolving_tied(t.name);
      const auto bytes = mt->file->map(*mt->info);
      std::vector<float> v(bytes.size() / 4);
      std::memcpy(v.data(), bytes.data(), bytes.size());
      return v;
    };
    const auto p = load(*trio.pre), q = load(*trio.post), g = load(*trio.target);
    double pp = 0, aa = 0, bb = 0, ab = 0;
    for (size_t i = 0; i < p.size(); ++i) {
      const double a = static_cast<double>(q[i]) - p[i], b = static_cast<double>(g[i]) - p[i];
      pp += static_cast<double>(p[i]) * p[i];
      aa += a * a;
      bb += b * b;
      ab += a * b;
    }
    EXPECT_NEAR(t.stats.rel_post(), std::sqrt(aa / pp), 1e-12 * std::sqrt(aa / pp)) << t.name;
    EXPECT_NEAR(t.stats.rel_target(), std::sqrt(bb / pp), 1e-12 * std::sqrt(bb / pp)) << t.name;
    EXPECT_NEAR(t.stats.cosine(), ab / std::sqrt(aa * bb), 1e-12) << t.name;
  }
}

TEST(Lineage, SimdSumsAgreeWithTheScalarTwin) {
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  for (size_t n : {0u, 1u, 3u, 17u, 1000u, 65537u}) {
    std::vector<float> p(n), a(n), b(n);
    for (size_t i = 0; i < n; ++i) p[i] = dist(rng), a[i] = p[i] + dist(rng) / 10, b[i] = p[i] + dist(rng) / 10;
    kernels::DeltaSums simd, scalar;
    kernels::accumulate_delta_sums(p.data(), a.data(), b.data(), n, simd);
    kernels::scalar::accumulate_delta_sums(p.data(), a.data(), b.data(), n, scalar);
    EXPECT_NEAR(simd.base_sq, scalar.base_sq, 1e-12 * scalar.base_sq + 1e-300) << n;
    EXPECT_NEAR(simd.a_sq, scalar.a_sq, 1e-12 * scalar.a_sq + 1e-300) << n;
    EXPECT_NEAR(simd.b_sq, scalar.b_sq, 1e-12 * scalar.b_sq + 1e-300) << n;
    EXPECT_NEAR(simd.dot, scalar.dot, 1e-12 * std::sqrt(scalar.a_sq * scalar.b_sq) + 1e-300) << n;
  }
}

}  // namespace
}  // namespace rvec
