#include "eval/stats.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

namespace rvec {

double mean(const std::vector<double>& values) {
  if (values.empty()) return 0;
  double sum = 0;
  for (double v : values) sum += v;
  return sum / static_cast<double>(values.size());
}

Interval bootstrap_mean(const std::vector<double>& values, uint64_t seed, int resamples, double level) {
  return bootstrap_mean_test(values, seed, resamples, level).ci;
}

BootstrapTest bootstrap_mean_test(const std::vector<double>& values, uint64_t seed, int resamples, double level) {
  if (values.empty()) return {};
  std::mt19937_64 rng(seed);
  const size_t n = values.size();
  std::vector<double> means(static_cast<size_t>(resamples));
  for (auto& m : means) {
    double sum = 0;
    for (size_t i = 0; i < n; ++i) sum += values[rng() % n];
    m = sum / static_cast<double>(n);
  }
  std::sort(means.begin(), means.end());
  const double tail = (1.0 - level) / 2.0;
  const auto at = [&](double q) {
    const double pos = q * static_cast<double>(means.size() - 1);
    const size_t lo = static_cast<size_t>(std::floor(pos));
    const size_t hi = std::min(lo + 1, means.size() - 1);
    return means[lo] + (pos - static_cast<double>(lo)) * (means[hi] - means[lo]);
  };
  const auto at_most_zero = static_cast<double>(std::upper_bound(means.begin(), means.end(), 0.0) - means.begin());
  const auto at_least_zero = static_cast<double>(means.end() - std::lower_bound(means.begin(), means.end(), 0.0));
  const double p = 2 * (std::min(at_most_zero, at_least_zero) + 1) / (static_cast<double>(resamples) + 1);
  return {{at(tail), at(1.0 - tail)}, std::min(1.0, p)};
}

std::vector<bool> holm_reject(const std::vector<double>& p, double alpha) {
  std::vector<size_t> order(p.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] < p[b]; });
  std::vector<bool> reject(p.size(), false);
  for (size_t rank = 0; rank < order.size(); ++rank) {
    if (p[order[rank]] > alpha / static_cast<double>(order.size() - rank)) break;
    reject[order[rank]] = true;
  }
  return reject;
}

std::vector<int> pass_k_values(int samples) {
  std::vector<int> ks;
  for (int k = 1; k < samples; k *= 2) ks.push_back(k);
  if (samples >= 1) ks.push_back(samples);
  return ks;
}

Interval wilson(uint64_t successes, uint64_t n, double z) {
  if (n == 0) return {0, 1};
  const double p = static_cast<double>(successes) / static_cast<double>(n), nn = static_cast<double>(n);
  const double denom = 1 + z * z / nn;
  const double center = (p + z * z / (2 * nn)) / denom;
  const double half = z * std::sqrt(p * (1 - p) / nn + z * z / (4 * nn * nn)) / denom;
  return {std::max(0.0, center - half), std::min(1.0, center + half)};
}

double pass_at_k(uint64_t n, uint64_t c, uint64_t k) {
  if (k == 0 || n == 0) return 0;
  if (n - c < k) return 1.0;
  double fail = 1.0;  // C(n-c, k) / C(n, k) as a product
  for (uint64_t i = n - c + 1; i <= n; ++i) fail *= 1.0 - static_cast<double>(k) / static_cast<double>(i);
  return 1.0 - fail;
}

std::optional<std::string> majority_answer(const std::vector<std::optional<std::string>>& answers) {
  std::map<std::string, std::pair<size_t, size_t>> counts;  // answer -> (count, first index)
  for (size_t i = 0; i < answers.size(); ++i) {
    if (!answers[i]) continue;
    auto [it, fresh] = counts.try_emplace(*answers[i], 0, i);
    ++it->second.first;
  }
  std::optional<std::string> best;
  size_t best_count = 0, best_first = 0;
  for (const auto& [answer, stat] : counts) {
    if (stat.first > best_count || (stat.first == best_count && stat.second < best_first)) {
      best = answer, best_count = stat.first, best_first = stat.second;
    }
  }
  return best;
}

}  // namespace rvec
