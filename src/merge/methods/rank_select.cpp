#include "merge/methods/rank_select.hpp"

#include <algorithm>

#include "base/test_hooks.hpp"
#include "numeric/kernels.hpp"

namespace rvec {
namespace {

// Where the k-th largest element falls when `counts` holds, per index, how
// many elements have that index (larger indices for larger values) and
// `above` more lie above every index: the index, and how many lie above it.
struct KthLargest {
  size_t index = 0;
  uint64_t above = 0;
};
KthLargest kth_largest(std::span<const uint64_t> counts, uint64_t k, uint64_t above) {
  for (size_t i = counts.size(); i-- > 0;) {
    if (above + counts[i] >= k) return {i, above};
    above += counts[i];
  }
  return {0, above};
}

}  // namespace

void HighHistogram::add(std::span<const float> delta) {
  if (pending_ + delta.size() > UINT32_MAX) flush();
  pending_ += delta.size();
  uint32_t* c = counts_.data();
  const float* d = delta.data();
  const size_t n = delta.size();
  size_t j = 0;
  for (; j + 2 <= n; j += 2) {
    ++c[2 * static_cast<size_t>(magnitude_bits(d[j]) >> 16)];
    ++c[2 * static_cast<size_t>(magnitude_bits(d[j + 1]) >> 16) + 1];
  }
  if (j < n) ++c[2 * static_cast<size_t>(magnitude_bits(d[j]) >> 16)];
}

std::vector<uint64_t> HighHistogram::totals() {
  flush();
  return {totals_.data(), totals_.data() + kHighBins};
}

void HighHistogram::flush() {
  for (size_t bin = 0; bin < kHighBins; ++bin) {
    totals_[bin] += uint64_t{counts_[2 * bin]} + counts_[2 * bin + 1];
    counts_[2 * bin] = counts_[2 * bin + 1] = 0;
  }
  pending_ = 0;
}

LowWindow::LowWindow(int32_t first) : first_(first), counts_(kWindowBins * kLowBins) {}

void LowWindow::add(int32_t bits) {
  const int32_t bin = bits >> 16;
  if (holds(bin)) ++counts_[static_cast<size_t>(bin - first_) * kLowBins + (bits & 0xFFFF)];
}

// The elements in the window are gathered first (SIMD) and then counted,
// with no branch per element.
void LowWindow::add(std::span<const float> delta) {
  hits_.resize(delta.size());
  const size_t found = kernels::gather_bins(delta.data(), delta.size(), first_, kWindowBins, hits_.data());
  for (size_t j = 0; j < found; ++j) {
    ++counts_[static_cast<size_t>((hits_[j] >> 16) - first_) * kLowBins + (hits_[j] & 0xFFFF)];
  }
}

std::vector<uint64_t> LowWindow::low_counts(int32_t bin) const {
  const uint32_t* from = counts_.data() + static_cast<size_t>(bin - first_) * kLowBins;
  return {from, from + kLowBins};
}

RankBound::RankBound(uint64_t k, uint64_t n, size_t sample)
    : k_(k), n_(n), sample_length_(test_hooks::rank_sample().value_or(sample)) {
  if (k >= n) threshold_ = -1;
  if (k == 0) threshold_ = INT32_MAX;
}

void RankBound::observe_first(std::span<const float> delta) {
  if (trivial()) return;
  if (!window_ && sampled_ < sample_length_) {
    if (sample_.size() == 0) sample_ = ZeroedPages<int32_t>(std::min<uint64_t>(n_, sample_length_));
    const size_t take = std::min(delta.size(), sample_length_ - sampled_);
    std::ranges::transform(delta.first(take), sample_.data() + sampled_, magnitude_bits);
    sampled_ += take;
    delta = delta.subspan(take);
    if (sampled_ == sample_length_ && n_ > sample_length_ && n_ <= UINT32_MAX) open_window();
  }
  if (window_) window_->add(delta);
}

void RankBound::end_first_pass(const std::vector<uint64_t>& high) {
  if (trivial()) return;
  choose_bin(high);
  if (sampled_ == n_) {
    low_.assign(kLowBins, 0);
    for (const int32_t bits : sample_.span()) {
      if ((bits >> 16) == bin_) ++low_[bits & 0xFFFF];
    }
    resolved_ = true;
  } else if (window_ && window_->holds(bin_)) {
    low_ = window_->low_counts(bin_);
    resolved_ = true;
  } else {
    low_.assign(kLowBins, 0);
  }
  sample_ = {};
  window_.reset();
  if (resolved_) choose_threshold();
}

void RankBound::count_low(std::span<const float> delta) {
  hits_.resize(delta.size());
  const size_t found = kernels::gather_bins(delta.data(), delta.size(), bin_, 1, hits_.data());
  for (size_t j = 0; j < found; ++j) ++low_[hits_[j] & 0xFFFF];
}

void RankBound::end_low_pass() {
  choose_threshold();
  resolved_ = true;
}

void RankBound::select(const float* d, float r, float* t, size_t n) {
  kernels::keep_above(d, threshold_, r, t, n);
  if (saturated()) return;
  equal_seen_ += kernels::keep_first_equal(d, threshold_, equal_wanted_ - equal_seen_, r, t, n);
}

void RankBound::choose_bin(const std::vector<uint64_t>& high) {
  const KthLargest at = kth_largest(high, k_, 0);
  bin_ = static_cast<int32_t>(at.index);
  above_ = at.above;
}

void RankBound::choose_threshold() {
  const KthLargest at = kth_largest(low_, k_, above_);
  threshold_ = (bin_ << 16) | static_cast<int32_t>(at.index);
  equal_wanted_ = k_ - at.above;
  low_ = {};
}

void RankBound::open_window() {
  const double share = static_cast<double>(k_) / static_cast<double>(n_);
  const auto rank = std::max<uint64_t>(1, static_cast<uint64_t>(share * static_cast<double>(sampled_)));
  std::vector<uint64_t> high(kHighBins, 0);
  for (const int32_t bits : sample_.span()) ++high[static_cast<size_t>(bits >> 16)];
  const auto guess = static_cast<int32_t>(kth_largest(high, rank, 0).index);
  const int32_t first = std::clamp(guess - kWindowBins / 2, 0, static_cast<int32_t>(kHighBins) - kWindowBins);
  window_ = std::make_unique<LowWindow>(first);
  for (const int32_t bits : sample_.span()) window_->add(bits);
  sample_ = {};
}

}  // namespace rvec
