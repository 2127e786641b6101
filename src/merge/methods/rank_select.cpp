#include "merge/methods/rank_select.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>
#include <mutex>

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
template <class CountOf>
KthLargest kth_largest(size_t size, CountOf count_of, uint64_t k, uint64_t above) {
  for (size_t i = size; i-- > 0;) {
    const uint64_t count = count_of(i);
    if (above + count >= k) return {i, above};
    above += count;
  }
  return {0, above};
}
template <class Count>
KthLargest kth_largest(std::span<const Count> counts, uint64_t k, uint64_t above) {
  return kth_largest(counts.size(), [&](size_t i) { return uint64_t{counts[i]}; }, k, above);
}

// Page-backed arrays of one length kept between tensors, so that a merge maps
// and faults their pages in once, not once per tensor: the windows' counts
// (taken zeroed, given back zeroed) and the samples of tensors at least as
// long as the default sample (taken as the last user left them). An array of
// another length (a shorter tensor's sample, a test's) is neither taken from
// nor kept in the pool. Thread-safe.
template <class T>
class PagePool {
 public:
  using Pages = std::unique_ptr<ZeroedPages<T>>;

  explicit PagePool(size_t length) : length_(length) {}

  Pages take(size_t length) {
    if (length == length_) {
      const std::lock_guard lock(mutex_);
      if (!idle_.empty()) {
        Pages pages = std::move(idle_.back());
        idle_.pop_back();
        return pages;
      }
    }
    return std::make_unique<ZeroedPages<T>>(length);
  }

  void give_back(Pages pages) {
    if (!pages || pages->size() != length_) return;
    const std::lock_guard lock(mutex_);
    if (idle_.size() < kMostIdle) idle_.push_back(std::move(pages));
  }

 private:
  static constexpr size_t kMostIdle = 16;
  const size_t length_;
  std::mutex mutex_;
  std::vector<Pages> idle_;
};

PagePool<uint8_t>& window_pool() {
  static PagePool<uint8_t> pool(kWindowBins * kLowBins);
  return pool;
}

PagePool<int32_t>& sample_pool() {
  static PagePool<int32_t> pool(kDefaultRankSample);
  return pool;
}

// Room for the gathered bits of one chunk of elements, on the stack: the
// counting passes gather chunk by chunk, so no buffer grows with a tile.
struct GatheredChunk {
  static constexpr size_t kElements = 4096;
  std::array<int32_t, kElements> bits;
};

// visit(chunk) for each GatheredChunk::kElements-long stretch of `all`, in order.
template <class T, class Visit>
void for_each_chunk(std::span<const T> all, Visit visit) {
  for (size_t start = 0; start < all.size(); start += GatheredChunk::kElements) {
    visit(all.subspan(start, std::min(GatheredChunk::kElements, all.size() - start)));
  }
}

// visit(hits) for each chunk of `delta`, hits the |d| bits of its elements
// whose high 16 bits lie in [first_bin, first_bin + bins), in element order;
// adds to *above the number lying above that range.
template <class Visit>
void for_each_gathered(std::span<const float> delta, int32_t first_bin, uint32_t bins, uint64_t* above, Visit visit) {
  GatheredChunk hits;
  for_each_chunk(delta, [&](std::span<const float> chunk) {
    const size_t found = kernels::gather_bins(chunk.data(), chunk.size(), first_bin, bins, hits.bits.data(), above);
    visit(std::span<const int32_t>(hits.bits.data(), found));
  });
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

LowWindow::LowWindow(int32_t first) : first_(first), counts_(window_pool().take(kWindowBins * kLowBins)) {}

LowWindow::~LowWindow() {
  for (int32_t bin = 0; bin < kWindowBins; ++bin) {
    if (in_bin_[bin] != zero_low_[bin]) std::memset(counts_->data() + static_cast<size_t>(bin) * kLowBins, 0, kLowBins);
  }
  window_pool().give_back(std::move(counts_));
}

// An element whose low 16 bits are not zero (count_hits counts the others).
void LowWindow::count(int32_t bits) {
  const auto bin = static_cast<size_t>((bits >> 16) - first_);
  ++in_bin_[bin];
  const size_t cell = bin * kLowBins + (bits & 0xFFFF);
  if (++(*counts_)[cell] == 0) note_wrap(static_cast<uint32_t>(cell));
}

// count() for each hit, with the zero-low ones counted in four copies taken in
// turn: consecutive hits are often the same number (46 % on the 1.5B
// family), and one copy would make each increment wait for the one before.
void LowWindow::count_hits(std::span<const int32_t> hits) {
  constexpr size_t kCopies = 4;
  uint32_t zero[kCopies][kWindowBins] = {};  // a chunk's hits fit in 32 bits
  const auto count_one = [&](int32_t bits, uint32_t* zero_copy) {
    if ((bits & 0xFFFF) == 0) {
      ++zero_copy[(bits >> 16) - first_];
    } else {
      count(bits);
    }
  };
  size_t j = 0;
  for (; j + kCopies <= hits.size(); j += kCopies) {
    for (size_t c = 0; c < kCopies; ++c) count_one(hits[j + c], zero[c]);
  }
  for (; j < hits.size(); ++j) count_one(hits[j], zero[0]);
  for (size_t bin = 0; bin < kWindowBins; ++bin) {
    const uint64_t total = uint64_t{zero[0][bin]} + zero[1][bin] + zero[2][bin] + zero[3][bin];
    zero_low_[bin] += total;
    in_bin_[bin] += total;
  }
}

void LowWindow::note_wrap(uint32_t cell) {
  constexpr size_t kFoldAt = 4096;
  wrapped_.push_back(cell);
  if (wrapped_.size() == kFoldAt) fold_wraps();
}

// wraps_ += the sorted, run-length counted wrapped_, by cell.
void LowWindow::fold_wraps() {
  std::ranges::sort(wrapped_);
  std::vector<CellWraps> merged;
  merged.reserve(wraps_.size() + wrapped_.size());
  auto old = wraps_.begin();
  for (size_t i = 0; i < wrapped_.size();) {
    const uint32_t cell = wrapped_[i];
    uint64_t wraps = 0;
    for (; i < wrapped_.size() && wrapped_[i] == cell; ++i) ++wraps;
    for (; old != wraps_.end() && old->cell < cell; ++old) merged.push_back(*old);
    if (old != wraps_.end() && old->cell == cell) wraps += (old++)->wraps;
    merged.push_back({cell, wraps});
  }
  merged.insert(merged.end(), old, wraps_.end());
  wraps_ = std::move(merged);
  wrapped_.clear();
}

void LowWindow::add(std::span<const int32_t> bits) {
  GatheredChunk hits;
  for_each_chunk(bits, [&](std::span<const int32_t> chunk) {
    size_t found = 0;
    uint64_t above = 0;
    for (const int32_t b : chunk) {
      hits.bits[found] = b;
      found += holds(b >> 16);
      above += (b >> 16) >= first_ + kWindowBins;
    }
    above_ += above;
    count_hits({hits.bits.data(), found});
  });
}

// One SIMD scan gathers the elements in the window and counts those above
// it; only the gathered few are then counted one by one.
void LowWindow::add(std::span<const float> delta) {
  for_each_gathered(delta, first_, kWindowBins, &above_, [&](std::span<const int32_t> hits) { count_hits(hits); });
}

std::pair<size_t, uint64_t> LowWindow::kth_in_bin(int32_t bin, uint64_t k, uint64_t above) const {
  const auto base = static_cast<uint32_t>(static_cast<size_t>(bin - first_) * kLowBins);
  // kth_largest asks for the lows from the highest down; wraps_, sorted by
  // cell, is walked down alongside them.
  auto wrap = std::ranges::lower_bound(wraps_, base + static_cast<uint32_t>(kLowBins), {}, &CellWraps::cell);
  const auto count_of = [&](size_t low) -> uint64_t {
    if (low == 0) return zero_low_[bin - first_];
    const auto cell = base + static_cast<uint32_t>(low);
    uint64_t wraps = 0;
    if (wrap != wraps_.begin() && std::prev(wrap)->cell == cell) wraps = (--wrap)->wraps;
    return (*counts_)[cell] + 256 * wraps;
  };
  const KthLargest at = kth_largest(kLowBins, count_of, k, above);
  return {at.index, at.above};
}

void LowWindow::end_counting() { fold_wraps(); }

RankBound::RankBound(uint64_t k, uint64_t n, size_t sample)
    : k_(k), n_(n), sample_length_(test_hooks::rank_sample().value_or(sample)) {
  if (k >= n) threshold_ = -1;
  if (k == 0) threshold_ = INT32_MAX;
}

bool RankBound::wants(unsigned pass) const {
  if (trivial()) return false;
  switch (pass) {
    case 0: return stage_ == Stage::kSample;
    case 1: return stage_ == Stage::kHistogram;
    case 2: return stage_ == Stage::kLow;
    default: return false;
  }
}

void RankBound::observe(std::span<const float> delta) {
  switch (stage_) {
    case Stage::kSample: observe_sample(delta); break;
    case Stage::kHistogram: high_->add(delta); break;
    case Stage::kLow: count_low(delta); break;
    case Stage::kKnown: break;
  }
}

void RankBound::end_pass(unsigned pass) {
  if (!wants(pass)) return;
  switch (stage_) {
    case Stage::kSample: end_sample_pass(); break;
    case Stage::kHistogram:
      choose_bin(high_->totals());
      high_.reset();
      low_.assign(kLowBins, 0);
      stage_ = Stage::kLow;
      break;
    case Stage::kLow: end_low_pass(); break;
    case Stage::kKnown: break;
  }
}

void RankBound::end_low_pass() {
  const KthLargest at = kth_largest(std::span<const uint64_t>(low_), k_, above_);
  choose_threshold(at.index, at.above);
  low_ = {};
}

void RankBound::observe_sample(std::span<const float> delta) {
  if (!window_ && sampled_ < sample_length_) {
    if (!sample_) sample_ = sample_pool().take(std::min<uint64_t>(n_, sample_length_));
    const size_t take = std::min(delta.size(), sample_length_ - sampled_);
    std::ranges::transform(delta.first(take), sample_->data() + sampled_, magnitude_bits);
    sampled_ += take;
    delta = delta.subspan(take);
    if (sampled_ == sample_length_ && n_ > sample_length_ && n_ <= UINT32_MAX) open_window();
  }
  if (window_) window_->add(delta);
}

void RankBound::end_sample_pass() {
  if (sampled_ == n_) {
    answer_from_sample();
  } else if (!window_ || !answer_from_window()) {
    high_ = std::make_unique<HighHistogram>();
    stage_ = Stage::kHistogram;
  }
  sample_pool().give_back(std::move(sample_));
  window_.reset();
}

// The k-th largest of the sample (which is the whole tensor), found in place.
void RankBound::answer_from_sample() {
  const std::span<int32_t> bits = sampled_bits();
  const auto kth = bits.begin() + static_cast<ptrdiff_t>(k_ - 1);
  std::ranges::nth_element(bits, kth, std::greater{});
  threshold_ = *kth;
  equal_wanted_ = k_ - static_cast<uint64_t>(std::ranges::count_if(bits, [&](int32_t b) { return b > threshold_; }));
  stage_ = Stage::kKnown;
}

// The k-th largest lies in the window when fewer than k elements lie above
// it and at least k above its lowest bin.
bool RankBound::answer_from_window() {
  window_->end_counting();
  uint64_t above = window_->above();
  for (int32_t bin = window_->first() + kWindowBins - 1; bin >= window_->first(); --bin) {
    if (above >= k_) return false;
    if (above + window_->in_bin(bin) >= k_) {
      bin_ = bin;
      const auto [low, above_low] = window_->kth_in_bin(bin, k_, above);
      choose_threshold(low, above_low);
      return true;
    }
    above += window_->in_bin(bin);
  }
  return false;
}

void RankBound::count_low(std::span<const float> delta) {
  uint64_t higher = 0;
  for_each_gathered(delta, bin_, 1, &higher, [&](std::span<const int32_t> hits) {
    for (const int32_t bits : hits) ++low_[bits & 0xFFFF];
  });
}

void RankBound::select(const float* d, float r, float* t, size_t n) {
  took(kernels::keep_top(d, threshold_, equal_wanted_ - equal_seen_, r, t, n));
}

void RankBound::choose_bin(std::span<const uint64_t> high) {
  const KthLargest at = kth_largest(high, k_, 0);
  bin_ = static_cast<int32_t>(at.index);
  above_ = at.above;
}

void RankBound::choose_threshold(size_t low, uint64_t above) {
  threshold_ = (bin_ << 16) | static_cast<int32_t>(low);
  equal_wanted_ = k_ - above;
  stage_ = Stage::kKnown;
}

// The guess: the bin of the sample's rank-th largest, from a histogram of the
// sample's high 16 bits (per thread, reused, left zeroed).
void RankBound::open_window() {
  const double share = static_cast<double>(k_) / static_cast<double>(n_);
  const auto rank = std::max<uint64_t>(1, static_cast<uint64_t>(share * static_cast<double>(sampled_)));
  thread_local ZeroedPages<uint32_t> high(kHighBins);
  for (const int32_t bits : sampled_bits()) ++high[static_cast<size_t>(bits >> 16)];
  const auto guess = static_cast<int32_t>(kth_largest(std::span<const uint32_t>(high.span()), rank, 0).index);
  for (const int32_t bits : sampled_bits()) high[static_cast<size_t>(bits >> 16)] = 0;  // pages it never wrote stay unmapped
  const int32_t first = std::clamp(guess - kWindowBins / 2, 0, static_cast<int32_t>(kHighBins) - kWindowBins);
  window_ = std::make_unique<LowWindow>(first);
  window_->add(sampled_bits());
  sample_pool().give_back(std::move(sample_));
}

}  // namespace rvec
