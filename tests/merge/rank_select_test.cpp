#include "merge/methods/rank_select.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <span>
#include <vector>

namespace rvec {
namespace {

float from_bits(uint32_t bits) {
  float x;
  std::memcpy(&x, &bits, 4);
  return x;
}

float bf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000u;
  return from_bits(bits);
}

// Deltas as rvec sees them: differences of bf16 weights (few distinct
// magnitudes, many ties), with the first `start` elements `scale` times the
// rest (so a guess from the start of the tensor misses, low or high), and a
// few NaN, Inf and signed zeros.
std::vector<float> deltas(size_t n, size_t start, uint64_t seed, float scale = 0.01f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> weight(0, 0.02f);
  std::uniform_real_distribution<float> step(-1e-3f, 1e-3f);
  std::vector<float> d(n);
  for (size_t j = 0; j < n; ++j) {
    const float pre = bf16(weight(rng));
    d[j] = bf16(pre + step(rng) * (j < start ? scale : 1.0f)) - pre;
    if (j % 997 == 5) d[j] = from_bits(0x7FC00000);
    if (j % 991 == 7) d[j] = -from_bits(0x7F800000);
    if (j % 983 == 9) d[j] = -0.0f;
  }
  return d;
}

// Element j is in the top k: sorted by |d| bits descending, then index.
std::vector<bool> reference_top(const std::vector<float>& d, uint64_t k) {
  std::vector<size_t> order(d.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::ranges::stable_sort(order, [&](size_t a, size_t b) { return magnitude_bits(d[a]) > magnitude_bits(d[b]); });
  std::vector<bool> in(d.size(), false);
  for (uint64_t r = 0; r < std::min<uint64_t>(k, d.size()); ++r) in[order[r]] = true;
  return in;
}

struct Outcome {
  std::vector<bool> in;
  unsigned passes = 0;  // statistics passes the bound asked for
};

// The protocol of rank_select.hpp, in tiles of `tile` elements.
Outcome run(const std::vector<float>& d, uint64_t k, size_t sample, size_t tile = 1000) {
  RankBound bound(k, d.size(), sample);
  Outcome out;
  for (unsigned pass = 0; pass < RankBound::kMostPasses; ++pass) {
    if (!bound.wants(pass)) continue;
    ++out.passes;
    for (size_t j = 0; j < d.size(); j += tile) bound.observe(std::span(d).subspan(j, std::min(tile, d.size() - j)));
    bound.end_pass(pass);
  }
  std::vector<float> kept(d.size());
  for (size_t j = 0; j < d.size(); j += tile) {
    const size_t m = std::min(tile, d.size() - j);
    bound.select(d.data() + j, 1.0f, kept.data() + j, m);
  }
  bound.restart();
  for (size_t j = 0; j < d.size(); ++j) {
    const bool admitted = bound.admits(magnitude_bits(d[j]));
    const bool selected = std::memcmp(&kept[j], &d[j], 4) == 0;
    out.in.push_back(admitted);
    if (d[j] != 0 && !std::isnan(d[j])) {
      EXPECT_EQ(selected, admitted) << "element " << j;
    }
  }
  return out;
}

TEST(RankSelect, ExactlyTheTopKWhateverTheSampleAndWhetherTheGuessHolds) {
  for (const size_t n : {1u, 100u, 5000u, 70000u}) {
    for (const auto& [start, scale] : {std::pair{size_t{0}, 1.0f}, {n / 3, 0.01f}, {n / 3, 100.0f}}) {
      const auto d = deltas(n, start, n + start, scale);
      for (const uint64_t k : {uint64_t{0}, uint64_t{1}, n / 5, n / 2, n - 1, uint64_t{n}, n + 3}) {
        const auto expected = reference_top(d, k);
        // The last sample length is more than any machine maps: a bound
        // samples at most its tensor (it once asked for the whole length).
        for (const size_t sample : {size_t{0}, size_t{1}, size_t{64}, size_t{1000}, n, 2 * n, size_t{1} << 40}) {
          const Outcome got = run(d, k, sample);
          EXPECT_TRUE(got.in == expected) << "n=" << n << " start=" << start << " scale=" << scale << " k=" << k << " sample=" << sample;
        }
      }
    }
  }
}

// The merge hands over tiles of 16,384 elements, longer than the chunks the
// counting gathers in; a tile as long as the tensor, longer still. Through
// the window (a sample of 10,000: the guess holds) and through the fallback
// passes (no sample), every element is counted once.
TEST(RankSelect, TheSameWhateverTheTileLength) {
  const size_t n = 70000;
  const auto d = deltas(n, 0, 4);
  for (const uint64_t k : {n / 5, n / 2}) {
    const auto expected = reference_top(d, k);
    for (const size_t sample : {size_t{10000}, size_t{0}}) {
      for (const size_t tile : {size_t{4095}, size_t{16384}, n}) {
        const Outcome got = run(d, k, sample, tile);
        EXPECT_TRUE(got.in == expected) << "k=" << k << " sample=" << sample << " tile=" << tile;
        EXPECT_EQ(got.passes, sample == 0 ? 3u : 1u) << "k=" << k << " sample=" << sample << " tile=" << tile;
      }
    }
  }
}

// Which path each case takes: a tensor the sample holds, or one whose guess
// is good, needs one pass; no sample, or a sample from an unrepresentative start, three.
TEST(RankSelect, MorePassesOnlyWhenTheGuessMisses) {
  const size_t n = 70000;
  const auto uniform = deltas(n, 0, 1), quiet_start = deltas(n, n / 3, 2), loud_start = deltas(n, n / 3, 3, 100.0f);
  EXPECT_EQ(run(uniform, n / 5, n).passes, 1u);
  EXPECT_EQ(run(uniform, n / 5, 10000).passes, 1u);
  EXPECT_EQ(run(uniform, n / 5, 0).passes, 3u);
  EXPECT_EQ(run(quiet_start, n / 5, 10000).passes, 3u);  // the threshold lies above the window
  EXPECT_EQ(run(loud_start, n / 5, 10000).passes, 3u);   // and below it
  EXPECT_EQ(run(uniform, 0, 0).passes, 0u);  // k = 0 and k = n need no pass
  EXPECT_EQ(run(uniform, n, 0).passes, 0u);
}

// The window counts in 8 bits: a value held by more than 2^8 elements wraps
// its count. Here two values in one bin, each held by about 700,000 elements
// (with other deltas every third element), wrap about 5,500 times, past the
// 4,096 wraps after which the window folds its list of wrapped cells into
// per-cell totals; the threshold still falls where a sort puts it, at either
// value and on either side. With `bf16`, the smaller value is a bf16 number
// (its low 16 bits zero: counted apart) and both come in runs of five.
void expect_counts_past_eight_bits(bool bf16) {
  const float value = bf16 ? from_bits(std::bit_cast<uint32_t>(4e-4f) & 0xFFFF0000u) : 4e-4f;
  const float neighbour = from_bits(std::bit_cast<uint32_t>(value) + 1);
  auto d = deltas(3 * 700001, 0, 9);
  for (size_t j = 0; j < d.size(); ++j) {
    const size_t slot = bf16 ? (j / 5) % 3 : j % 3;
    if (slot != 0) d[j] = (slot == 1) ? value : -neighbour;
  }
  const auto count = [&](auto pred) { return static_cast<uint64_t>(std::ranges::count_if(d, pred)); };
  const uint64_t above = count([&](float x) { return magnitude_bits(x) > magnitude_bits(neighbour); });
  const uint64_t at_neighbour = count([&](float x) { return magnitude_bits(x) == magnitude_bits(neighbour); });
  const uint64_t at_value = count([&](float x) { return magnitude_bits(x) == magnitude_bits(value); });
  const uint64_t both = at_neighbour + at_value;
  for (const uint64_t k : {above, above + 1, above + at_neighbour - 1, above + at_neighbour, above + at_neighbour + 1,
                           above + both - 1, above + both, above + both + 9}) {
    const Outcome got = run(d, k, 100000);
    EXPECT_TRUE(got.in == reference_top(d, k)) << "k=" << k;
    // The first 100,000 elements guess the window right when the k-th is well inside the two runs.
    if (k > above + 1000 && k + 1000 < above + both) {
      EXPECT_EQ(got.passes, 1u) << "k=" << k;
    }
  }
}

TEST(RankSelect, CountsPastEightBitsInTheWindow) {
  for (const bool bf16 : {false, true}) {
    SCOPED_TRACE(bf16 ? "a bf16 value in runs" : "values with long mantissas");
    expect_counts_past_eight_bits(bf16);
  }
}

}  // namespace
}  // namespace rvec
