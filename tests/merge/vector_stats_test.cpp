#include "merge/vector_stats.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <functional>

#include <sched.h>

#include "merge/job.hpp"
#include "merge/provenance.hpp"
#include "hf/synthetic.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

namespace fs = std::filesystem;

class VectorStatsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FamilyOptions options;
    options.dtype = DType::kF32;
    write_family(dir_.path(), options);
    pre_ = ModelFolder::open((dir_ / "pre").string());
    post_ = ModelFolder::open((dir_ / "post").string());
    target_ = ModelFolder::open((dir_ / "target").string());
    JobSpec extract;
    extract.kind = JobKind::kExtract;
    extract.weights = {1.0};
    extract.output = dir_ / "vector";
    const JobInputs inputs{{{pre_.get(), post_.get()}}, nullptr};
    run_job(inputs, extract, plan_job(inputs, extract));
    vector_ = ModelFolder::open((dir_ / "vector").string());
  }

  // fn(pre value, post value) for every element of every tensor, read here
  // from the files, independently of rvec's readers (F32 family).
  void each_pair(const std::function<void(float, float)>& fn) const {
    for (const auto& t : pre_->tensors()) {
      const auto p = t.file->map(*t.info);
      const ModelTensor* q = post_->find(t.name());
      const auto b = q->file->map(*q->info);
      for (size_t i = 0; i < p.size(); i += 4) {
        float x, y;
        std::memcpy(&x, &p[i], 4);
        std::memcpy(&y, &b[i], 4);
        fn(x, y);
      }
    }
  }

  test::TempDir dir_;
  std::unique_ptr<ModelFolder> pre_, post_, target_, vector_;
};

TEST_F(VectorStatsTest, SavedVectorAndOnTheFlyAgreeAndMatchAnIndependentSum) {
  const auto saved = analyse_vector({vector_.get(), nullptr});
  const auto live = analyse_vector({post_.get(), pre_.get()});
  EXPECT_EQ(saved.total.elements, 158'272u);
  EXPECT_DOUBLE_EQ(saved.total.sum_sq, live.total.sum_sq);
  double independent = 0;
  each_pair([&](float x, float y) {
    const double d = static_cast<double>(y - x);  // the f32 difference, as stored in the vector
    independent += d * d;
  });
  EXPECT_NEAR(saved.total.sum_sq, independent, 1e-12 * independent);
  double shares = 0;
  for (const auto& [kind, s] : saved.by_kind) shares += s.sum_sq / saved.total.sum_sq;
  EXPECT_NEAR(shares, 1.0, 1e-12);
  EXPECT_EQ(saved.by_layer.size(), 2u);
}

TEST_F(VectorStatsTest, AVectorComparedWithItselfHasCosineOneAndSparsityIsMonotonic) {
  const VectorSource v{vector_.get(), nullptr};
  const auto r = analyse_vector(v, &v);
  ASSERT_TRUE(r.compared);
  for (const auto& [layer, s] : r.by_layer) EXPECT_NEAR(s.cosine(), 1.0, 1e-12) << layer;
  for (size_t t = 1; t < kSparsityThresholds.size(); ++t) EXPECT_GE(r.total.below[t], r.total.below[t - 1]);
  EXPECT_EQ(r.total.below.back(), r.total.elements);  // generated deltas are all below 1e-3
  const std::string svg = layer_norms_svg(r, "test");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("<polyline"), std::string::npos);  // the cosine line
  EXPECT_EQ(svg.substr(svg.size() - 7), "</svg>\n");
}

TEST_F(VectorStatsTest, MergedModelCardCarriesTheSameNumbers) {
  JobSpec merge;
  merge.kind = JobKind::kMerge;
  merge.weights = {0.5};
  merge.output = dir_ / "merged";
  const JobInputs inputs{{{pre_.get(), post_.get()}}, target_.get()};
  const auto result = run_job(inputs, merge, plan_job(inputs, merge));
  ASSERT_TRUE(result.vector_stats_complete);
  const auto stats = analyse_vector({vector_.get(), nullptr});
  // The merge sums (post - pre)^2 in f64; the saved F32 vector holds f32(post - pre), rounded per element.
  for (const auto& [kind, s] : stats.by_kind) {
    EXPECT_NEAR(result.vector_by_kind.at(kind).a_sq, s.sum_sq, 1e-6 * s.sum_sq) << kind;
  }
  const auto prov = nlohmann::json::parse(test::read_file(dir_ / "merged" / kProvenanceFile));
  EXPECT_NEAR(prov["vector_stats"]["mlp"]["norm"].get<double>(), stats.by_kind.at("mlp").norm(), 1e-6);
  EXPECT_NE(test::read_file(dir_ / "merged" / "README.md").find("## Vector statistics"), std::string::npos);
}

// Tensors are shared out to the cores; the sums, counts and their order are
// those of one thread (every field compared bit for bit), and the sparsity
// counts match a count written here.
TEST_F(VectorStatsTest, OneThreadAndEveryCoreGiveTheSameReport) {
  const VectorSource v{post_.get(), pre_.get()};
  cpu_set_t all, one;
  ASSERT_EQ(sched_getaffinity(0, sizeof(all), &all), 0);
  CPU_ZERO(&one);
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &all)) {
      CPU_SET(cpu, &one);
      break;
    }
  }
  ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
  const VectorReport single = analyse_vector(v);
  ASSERT_EQ(sched_setaffinity(0, sizeof(all), &all), 0);
  const VectorReport every = analyse_vector(v);
  ASSERT_EQ(single.tensors.size(), every.tensors.size());
  const auto same = [](const VectorStats& a, const VectorStats& b) {
    return std::memcmp(&a.sum_sq, &b.sum_sq, 8) == 0 && std::memcmp(&a.dot, &b.dot, 8) == 0 &&
           a.elements == b.elements && a.below == b.below;
  };
  for (size_t i = 0; i < single.tensors.size(); ++i) {
    EXPECT_EQ(single.tensors[i].first, every.tensors[i].first);
    EXPECT_TRUE(same(single.tensors[i].second, every.tensors[i].second)) << single.tensors[i].first;
  }
  EXPECT_TRUE(same(single.total, every.total));

  std::array<uint64_t, kSparsityThresholds.size()> below{};
  each_pair([&](float x, float y) {
    for (size_t k = 0; k < below.size(); ++k) below[k] += std::fabs(y - x) <= static_cast<float>(kSparsityThresholds[k]);
  });
  EXPECT_EQ(every.total.below, below);
}

}  // namespace
}  // namespace rvec
