#include "eval/stats.hpp"

#include <gtest/gtest.h>

#include <cmath>

#include "eval/dataset.hpp"

namespace rvec {
namespace {

// Reference values computed by hand from the Wilson formula (and matching the
// intervals quoted for the paper's 4/30 and 10/30).
TEST(Stats, WilsonIntervalsMatchHandComputedValues) {
  const auto a = wilson(4, 30);
  EXPECT_NEAR(a.low, 0.0530966, 1e-6);
  EXPECT_NEAR(a.high, 0.2968133, 1e-6);
  const auto b = wilson(10, 30);
  EXPECT_NEAR(b.low, 0.1923050, 1e-6);
  EXPECT_NEAR(b.high, 0.5121995, 1e-6);
  EXPECT_NEAR(wilson(0, 10).high, 0.2775328, 1e-6);
  EXPECT_NEAR(wilson(30, 30).low, 0.8864866, 1e-6);
}

TEST(Stats, PassAtKIsTheUnbiasedEstimator) {
  EXPECT_DOUBLE_EQ(pass_at_k(10, 3, 1), 0.3);
  EXPECT_DOUBLE_EQ(pass_at_k(4, 1, 2), 0.5);  // 1 - C(3,2)/C(4,2)
  EXPECT_DOUBLE_EQ(pass_at_k(10, 0, 10), 0.0);
  EXPECT_DOUBLE_EQ(pass_at_k(10, 1, 10), 1.0);
  EXPECT_NEAR(pass_at_k(16, 2, 4), 1.0 - (14.0 * 13 * 12 * 11) / (16.0 * 15 * 14 * 13), 1e-12);
}

TEST(Stats, MajorityVotePrefersTheFirstSeenOnTies) {
  EXPECT_EQ(majority_answer({std::string("5"), std::nullopt, std::string("7"), std::string("7")}), "7");
  EXPECT_EQ(majority_answer({std::string("5"), std::string("7")}), "5");
  EXPECT_EQ(majority_answer({std::nullopt, std::nullopt}), std::nullopt);
}

// For 0/1 data the bootstrap percentile interval approaches the normal one,
// p ± 1.96 sqrt(p(1-p)/n); a constant sample has a zero-width interval.
TEST(Stats, BootstrapAgreesWithTheNormalApproximationOnLargeSamples) {
  std::vector<double> values(400, 0.0);
  for (size_t i = 0; i < 120; ++i) values[i * 3] = 1.0;  // p = 0.3
  const auto ci = bootstrap_mean(values, 7);
  const double half = 1.959963984540054 * std::sqrt(0.3 * 0.7 / 400);
  EXPECT_NEAR(ci.low, 0.3 - half, 0.006);
  EXPECT_NEAR(ci.high, 0.3 + half, 0.006);
  const auto flat = bootstrap_mean(std::vector<double>(50, 0.25), 1);
  EXPECT_DOUBLE_EQ(flat.low, 0.25);
  EXPECT_DOUBLE_EQ(flat.high, 0.25);
  EXPECT_EQ(bootstrap_mean(values, 7).low, ci.low);  // fixed seed, same interval
}

// The p-value is the smallest level at which the percentile interval would
// exclude 0: below 0.05 exactly when the 95 % interval excludes 0 (up to the
// interpolation between two resamples), and 1 for a difference of exactly 0.
TEST(Stats, TheBootstrapPValueAgreesWithTheInterval) {
  // Mean `shift`, standard error about 0.032: the intervals clearly include or exclude 0.
  for (const double shift : {-0.15, -0.03, 0.0, 0.02, 0.15}) {
    std::vector<double> d(100, 0.0);
    for (size_t i = 0; i < d.size(); ++i) d[i] = shift + (i % 5 == 0 ? 0.5 : i % 5 == 1 ? -0.5 : 0.0);
    const auto test = bootstrap_mean_test(d, 3);
    const auto ci = bootstrap_mean(d, 3);
    EXPECT_EQ(test.ci.low, ci.low);  // the same draws
    EXPECT_EQ(test.ci.high, ci.high);
    EXPECT_EQ(test.p < 0.05, ci.low > 0 || ci.high < 0) << shift;
    EXPECT_EQ(test.p < 0.05, std::abs(shift) > 0.1) << shift;
  }
  EXPECT_EQ(bootstrap_mean_test(std::vector<double>(30, 0.0), 1).p, 1.0);
  EXPECT_NEAR(bootstrap_mean_test(std::vector<double>(30, 0.5), 1).p, 2.0 / 10001, 1e-12);  // never at or below 0
}

// Holm at 0.05 with four p-values, by hand: sorted 0.001 <= 0.05/4, 0.012 <=
// 0.05/3, 0.03 > 0.05/2 stops, so 0.04 is not rejected either (though
// 0.04 < 0.05 alone, and 0.03 would pass Bonferroni-free testing).
TEST(Stats, HolmRejectsStepDownFromTheSmallestPValue) {
  EXPECT_EQ(holm_reject({0.03, 0.001, 0.04, 0.012}), (std::vector<bool>{false, true, false, true}));
  EXPECT_EQ(holm_reject({0.01, 0.02}), (std::vector<bool>{true, true}));      // 0.01 <= 0.025, 0.02 <= 0.05
  EXPECT_EQ(holm_reject({0.026, 0.04}), (std::vector<bool>{false, false}));   // 0.026 > 0.025 stops at once
  EXPECT_EQ(holm_reject({}), std::vector<bool>{});
}

TEST(Stats, PassAtKIsReportedForOneThePowersOfTwoBelowAndAllSamples) {
  EXPECT_EQ(pass_k_values(1), (std::vector<int>{1}));
  EXPECT_EQ(pass_k_values(4), (std::vector<int>{1, 2, 4}));
  EXPECT_EQ(pass_k_values(6), (std::vector<int>{1, 2, 4, 6}));
  EXPECT_EQ(pass_k_values(16), (std::vector<int>{1, 2, 4, 8, 16}));
}

TEST(Stats, DevSplitIsDeterministicAndRoughlyTheFraction) {
  size_t dev = 0;
  for (int i = 0; i < 2000; ++i) dev += in_dev_split("problem-" + std::to_string(i), 0.3, 42);
  EXPECT_NEAR(static_cast<double>(dev) / 2000, 0.3, 0.04);
  EXPECT_EQ(in_dev_split("abc", 0.5, 1), in_dev_split("abc", 0.5, 1));
}

}  // namespace
}  // namespace rvec
