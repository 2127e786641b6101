// Exact top-k by |d| of one tensor's vector in bounded memory: radix select
// on the f32 bit patterns of |d| (magnitude_bits orders like |d|, NaN above
// Inf), ties broken by lowest element index, so exactly k elements are in.
//
// The threshold is the k-th largest bit pattern: its high 16 bits (its bin),
// then its low 16 bits. Statistics passes over the tensor find it:
//
//   pass 0 (always): keeps the |d| bits of the first `sample` elements. A
//       tensor no longer than that is answered from them. For a longer one
//       they give a guess of the bin (the k-th largest of the tensor is about
//       the (k * sample / n)-th largest of the sample), and from then on the
//       pass counts, in one SIMD scan per chunk of 4,096 elements
//       (kernels::gather_bins), the elements above a window of kWindowBins
//       bins around the guess and the low 16 bits of those inside it
//       (LowWindow; the sample is counted into it first; low bits of zero per
//       bin, the rest per cell). When the k-th largest falls in the window,
//       the threshold is known.
//   pass 1 (only when the guess missed): a histogram of the high 16 bits of
//       every element (HighHistogram) picks the bin;
//   pass 2 (only after pass 1): the low 16 bits of the elements in that bin.
//
// Either way the counts, and so the threshold and the elements kept, are the
// same; only the number of passes differs.
//
// Memory per RankBound during pass 0: the sample (4 bytes an element, 256
// KiB at the default) and the window (16 bins x 65,536 8-bit counts, 1 MiB,
// and, per cell whose count wrapped, how many times: a few cells in practice,
// at most one per 256 elements of the tensor). The counts, and the samples
// of tensors at least as long as the default sample, are taken from
// process-wide pools (the counts handed back zeroed), so a merge maps and
// faults these pages in once, not once per tensor. During the fallback
// passes the histogram (512 KiB) or one bin's low counts (512 KiB); after
// the threshold is known, none. Counting gathers the elements it looks at in
// chunks of 4,096, on the stack (16 KiB), whatever the length of a tile. Not
// thread-safe: one tensor's bound is used by one thread at a time (the pool
// itself is thread-safe).
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "base/zeroed_pages.hpp"
#include "numeric/kernels.hpp"

namespace rvec {

// The bit pattern of |x| as a non-negative int32: orders like |x| (NaN above Inf).
inline int32_t magnitude_bits(float x) { return static_cast<int32_t>(std::bit_cast<uint32_t>(x) & 0x7FFFFFFFu); }

inline constexpr size_t kHighBins = 1 << 15;  // the high 16 bits of |d| (the sign bit is clear)
inline constexpr size_t kLowBins = 1 << 16;
inline constexpr int32_t kWindowBins = 16;
// The sample's default length (RVEC_TEST_RANK_SAMPLE overrides it in tests;
// base/test_hooks.hpp).
inline constexpr size_t kDefaultRankSample = 1 << 16;

// Counts of the high 16 bits of |d| over a tensor, in two interleaved 32-bit
// copies: neighbouring weights often share a bin, and one counter per element
// in turn lets their increments overlap instead of waiting on each other.
// The 32-bit counts move into 64-bit totals before they could overflow.
class HighHistogram {
 public:
  void add(std::span<const float> delta);
  std::vector<uint64_t> totals();

 private:
  void flush();

  ZeroedPages<uint32_t> counts_{2 * kHighBins};
  std::vector<uint64_t> totals_ = std::vector<uint64_t>(kHighBins);
  uint64_t pending_ = 0;  // elements counted since the last flush
};

// Counts, over a tensor of fewer than 2^32 elements, of the elements whose
// high 16 bits lie above [first, first + kWindowBins), and of the low 16 bits
// of those inside it.
class LowWindow {
 public:
  explicit LowWindow(int32_t first);
  ~LowWindow();  // hands the counts back to the pool, zeroed
  LowWindow(const LowWindow&) = delete;
  LowWindow& operator=(const LowWindow&) = delete;

  bool holds(int32_t bin) const { return static_cast<uint32_t>(bin - first_) < static_cast<uint32_t>(kWindowBins); }
  // Counts elements given by their |d| bits (the sample), or by their d.
  void add(std::span<const int32_t> bits);
  void add(std::span<const float> delta);

  uint64_t above() const { return above_; }
  // Elements in `bin`, which the window holds.
  uint64_t in_bin(int32_t bin) const { return in_bin_[bin - first_]; }
  int32_t first() const { return first_; }
  // Called once counting is over; then, for `bin` (which the window holds)
  // with `above` elements above it and the k-th largest element in it, that
  // element's low 16 bits and how many elements lie above them.
  void end_counting();
  std::pair<size_t, uint64_t> kth_in_bin(int32_t bin, uint64_t k, uint64_t above) const;

 private:
  void count(int32_t bits);

  int32_t first_;
  struct CellWraps {
    uint32_t cell;
    uint64_t wraps;
  };
  void note_wrap(uint32_t cell);
  void fold_wraps();

  void count_hits(std::span<const int32_t> hits);

  // Per bin of the window, the elements whose low 16 bits are zero. A
  // difference of two bf16 weights is mostly a bf16 number itself (96.6 % of
  // the elements the 1.5B family's windows held), so these take most of the
  // counting, and runs of them fall in one bin.
  uint64_t zero_low_[kWindowBins] = {};
  // Per bin of the window, per other low 16 bits, modulo 2^8 (pooled): 1
  // MiB, so the counts the scan increments stay in a core's L2 cache.
  // wrapped_ holds a cell each time its count passes a multiple of 2^8, until
  // fold_wraps() moves them into wraps_ (by cell, how many times it wrapped):
  // bf16 deltas crowd into a few cells, so the list would otherwise grow with
  // the tensor.
  std::unique_ptr<ZeroedPages<uint8_t>> counts_;
  std::vector<uint32_t> wrapped_;
  std::vector<CellWraps> wraps_;
  uint64_t above_ = 0;
  uint64_t in_bin_[kWindowBins] = {};
};

// Membership of the top k of n elements by |d|. Use: for pass = 0, 1, 2,
// while wants(pass): observe() the whole tensor in element order, then
// end_pass(pass). Then admits() or select() walk the elements in element
// order (restart() before walking again). An element is in when its bits
// exceed the threshold, or equal it and fewer than `equal_wanted` equal ones
// came before. k >= n keeps everything, k = 0 none.
class RankBound {
 public:
  static constexpr unsigned kMostPasses = 3;

  RankBound(uint64_t k, uint64_t n, size_t sample = kDefaultRankSample);

  bool trivial() const { return k_ == 0 || k_ >= n_; }
  int32_t threshold() const { return threshold_; }
  bool saturated() const { return equal_seen_ >= equal_wanted_; }
  bool wants(unsigned pass) const;

  void observe(std::span<const float> delta);
  void end_pass(unsigned pass);

  void restart() { equal_seen_ = 0; }

  // Is the next element (in element order) among the top k?
  bool admits(int32_t bits) {
    if (bits != threshold_) return bits > threshold_;
    if (saturated()) return false;
    ++equal_seen_;
    return true;
  }

  // t[j] = (element j in the top k) ? d[j] * r : 0 for the next n elements.
  void select(const float* d, float r, float* t, size_t n);

  // For kernels that walk the elements themselves: the limit from here on,
  // and how many elements equal to the threshold they took.
  kernels::TopLimit limit() const { return {threshold_, equal_wanted_ - equal_seen_}; }
  void took(uint64_t equal) { equal_seen_ += equal; }

 private:
  enum class Stage { kSample, kHistogram, kLow, kKnown };

  void observe_sample(std::span<const float> delta);
  void end_sample_pass();
  void answer_from_sample();
  bool answer_from_window();
  void count_low(std::span<const float> delta);
  void end_low_pass();
  void choose_bin(std::span<const uint64_t> high);
  // The threshold: low 16 bits `low` in bin_, with `above` elements above it.
  void choose_threshold(size_t low, uint64_t above);
  void open_window();
  // The sample's bits taken so far.
  std::span<int32_t> sampled_bits() { return {sample_->data(), sampled_}; }

  uint64_t k_, n_;
  size_t sample_length_;
  Stage stage_ = Stage::kSample;
  std::unique_ptr<ZeroedPages<int32_t>> sample_;  // |d| bits of the first elements, until the window opens (pooled)
  size_t sampled_ = 0;                    // how many of them
  std::unique_ptr<LowWindow> window_;     // during pass 0 of a tensor longer than the sample
  std::unique_ptr<HighHistogram> high_;   // during pass 1
  int32_t bin_ = 0;                       // of the k-th largest
  uint64_t above_ = 0;                    // elements in higher bins
  std::vector<uint64_t> low_;             // low counts of bin_ during pass 2
  int32_t threshold_ = 0;
  uint64_t equal_wanted_ = 0, equal_seen_ = 0;
};

}  // namespace rvec
