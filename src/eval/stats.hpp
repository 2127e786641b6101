// The statistics of an evaluation: per-problem accuracies over k samples,
// bootstrap confidence intervals over problems, paired differences against a
// baseline on the same problems, Wilson intervals, maj@k and pass@k.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace rvec {

struct Interval {
  double low = 0, high = 0;
};

// Percentile bootstrap of the mean of `values` (one value per problem, so a
// problem's k samples stay together): `resamples` draws with replacement from
// an mt19937_64 seeded with `seed`; the central `level` mass.
Interval bootstrap_mean(const std::vector<double>& values, uint64_t seed, int resamples = 10000, double level = 0.95);

// The same bootstrap (same draws, so the same interval) with the two-sided
// p-value of "the mean is 0" it implies: 2 min(#{means <= 0} + 1,
// #{means >= 0} + 1) / (resamples + 1), at most 1 — the smallest level at
// which the percentile interval would exclude 0.
struct BootstrapTest {
  Interval ci;
  double p = 1;
};
BootstrapTest bootstrap_mean_test(const std::vector<double>& values, uint64_t seed, int resamples = 10000,
                                  double level = 0.95);

// Holm's step-down procedure: which of the hypotheses with p-values `p` are
// rejected at family-wise error rate `alpha` (sorted ascending, the i-th
// smallest, i = 0.., is rejected while p <= alpha / (m - i)).
std::vector<bool> holm_reject(const std::vector<double>& p, double alpha = 0.05);

// The k of pass@k worth reporting for `samples` per problem: 1, the powers
// of two below it, and `samples` itself.
std::vector<int> pass_k_values(int samples);

// Wilson score interval for `successes` out of `n` (z = 1.96 for 95 %).
Interval wilson(uint64_t successes, uint64_t n, double z = 1.959963984540054);

// Unbiased pass@k from n samples of which c are correct (Chen et al. 2021):
// 1 - C(n-c, k) / C(n, k).
double pass_at_k(uint64_t n, uint64_t c, uint64_t k);

// The most frequent extracted answer (ties: the one seen first); nullopt if none.
std::optional<std::string> majority_answer(const std::vector<std::optional<std::string>>& answers);

double mean(const std::vector<double>& values);

}  // namespace rvec
