// The merge hot path: element-wise kernels over f32 blocks.
//
// Each kernel exists twice: a SIMD version (Highway, dynamic dispatch to the
// best instruction set of the running CPU) and a plain scalar twin in
// kernels::scalar that defines the result. Tests check the two agree bit for
// bit on random data with NaN, Inf and subnormals. Every operation is a single
// IEEE operation in f32 (no fused multiply-add, no FTZ), so the SIMD and
// scalar versions, and the vector-file path and the one-pass merge, round
// identically.
#pragma once

#include <cstddef>
#include <cstdint>

namespace rvec::kernels {

// in: [n] bf16 bits -> out: [n] f32 (exact)
void bf16_to_f32(const uint16_t* in, float* out, size_t n);
// in: [n] f32 -> out: [n] bf16 bits, round to nearest even, NaN stays NaN
void f32_to_bf16(const float* in, uint16_t* out, size_t n);
// out[i] = a[i] - b[i]; out may be a
void subtract(const float* a, const float* b, float* out, size_t n);
// out[i] = f32(a[i]) - f32(b[i]) for bf16 bits a, b: subtract after bf16_to_f32, in one pass
void bf16_difference(const uint16_t* a, const uint16_t* b, float* out, size_t n);
// out[i] = t[i] + w * d[i]   (the product rounded to f32, then the sum); out may be t
void add_scaled(const float* t, float w, const float* d, float* out, size_t n);

// out[i] = a[i] + b[i]; out may be a
void add(const float* a, const float* b, float* out, size_t n);
// out[i] = w * a[i]
void scale(float w, const float* a, float* out, size_t n);

// A rank limit as the trimming kernels see it (merge/methods/rank_select.hpp).
struct TopLimit {
  int32_t threshold = 0;
  uint64_t wanted = 0;  // how many elements equal to the threshold are still in
};
struct BandTaken {
  uint64_t wide = 0, narrow = 0;
};

// Trimming a vector (merge/methods/trim_and_sum.hpp). bits(x) is the bit
// pattern of |x| as an int32 (the sign cleared), which orders like |x|.
//   keep_top:     t[i] = bits(d[i]) > above ? d[i] * r : 0, except that the
//                 first `wanted` elements (in order) with bits(d[i]) == above
//                 get d[i] * r too; returns how many of those there were
//   keep_band:    t[i] = in(wide, i) && !in(narrow, i) ? d[i] * r : 0, where
//                 in(limit, i) is bits(d[i]) > limit.threshold, or equal to it
//                 and among the first limit.wanted such elements (in order);
//                 returns how many equal elements each limit took
//   keep_drawn:   t[i] = draw(first + i) < limit ? d[i] * r : 0, where draw(j)
//                 is SplitMix64's output number j from state `key`, shifted right
//                 by 11 (a uniform 53-bit draw):
//                   z = key + (j + 1) * 0x9E3779B97F4A7C15   (mod 2^64)
//                   z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) * 0x94D049BB133111EB
//                   draw(j) = (z ^ (z >> 31)) >> 11
uint64_t keep_top(const float* d, int32_t above, uint64_t wanted, float r, float* t, size_t n);
BandTaken keep_band(const float* d, TopLimit wide, TopLimit narrow, float r, float* t, size_t n);
void keep_drawn(uint64_t key, uint64_t first, uint64_t limit, const float* d, float r, float* t, size_t n);
// Radix select's window (merge/methods/rank_select.hpp): writes, in order,
// bits(d[i]) of the elements whose high 16 bits lie in [first_bin,
// first_bin + bins) to out (room for n) and returns how many; adds to *above
// the number whose high 16 bits lie above that range.
size_t gather_bins(const float* d, size_t n, int32_t first_bin, uint32_t bins, int32_t* out, uint64_t* above);
// counts[t] += the number of i with bits(d[i]) <= at_most[t], for each of the
// `thresholds` limits (|d| <= a non-negative limit's value, NaN never).
void count_at_most(const float* d, size_t n, const int32_t* at_most, size_t thresholds, uint64_t* counts);

// How many values are NaN or Inf (all exponent bits set). For 16-bit floats,
// `exponent` is the format's exponent mask: 0x7F80 for bf16, 0x7C00 for f16.
uint64_t count_nonfinite(const float* values, size_t n);
uint64_t count_nonfinite16(const uint16_t* bits, uint16_t exponent, size_t n);

// TIES' sign election and disjoint sum over `count` trimmed vectors t_k with
// weights w_k, all in f32, per element i:
//   u_k = w_k * t_k[i];  x_k = vote_weighted ? u_k : t_k[i]
//   s = x_0 + x_1 + ... (in order)
//   vector k agrees when x_k > 0 for s >= 0, x_k < 0 for s < 0
//   m = 0 + (agrees ? u_k : 0) + ...;  q = 0 + (agrees ? w_k : 0) + ... (in order)
//   out[i] = normalize ? m / (q == 0 ? 1 : q) : m
void elect_sum(const float* const* t, const float* w, size_t count, bool vote_weighted, bool normalize, float* out,
               size_t n);

// Sums for lineage checks, accumulated in f64 over f32 inputs:
//   base_sq += pre^2;  a_sq += (a - pre)^2;  b_sq += (b - pre)^2;  dot += (a - pre)(b - pre)
// `b` may be null (then b_sq and dot stay unchanged). The SIMD version sums in
// a different order than its twin, so the two agree to f64 rounding, not bits.
struct DeltaSums {
  double base_sq = 0, a_sq = 0, b_sq = 0, dot = 0;
  DeltaSums& operator+=(const DeltaSums& o) {
    base_sq += o.base_sq, a_sq += o.a_sq, b_sq += o.b_sq, dot += o.dot;
    return *this;
  }
};
void accumulate_delta_sums(const float* pre, const float* a, const float* b, size_t n, DeltaSums& sums);
// bf16_difference(post, pre, out, n) and, in the same pass, the sums
// accumulate_delta_sums(f32(pre), f32(post), nullptr, n, sums) would add
// (post - pre is taken in f64 for the sums, in f32 for out).
void bf16_difference_with_sums(const uint16_t* post, const uint16_t* pre, float* out, size_t n, DeltaSums& sums);

namespace scalar {
void accumulate_delta_sums(const float* pre, const float* a, const float* b, size_t n, DeltaSums& sums);
void bf16_to_f32(const uint16_t* in, float* out, size_t n);
void f32_to_bf16(const float* in, uint16_t* out, size_t n);
void subtract(const float* a, const float* b, float* out, size_t n);
void bf16_difference(const uint16_t* a, const uint16_t* b, float* out, size_t n);
void bf16_difference_with_sums(const uint16_t* post, const uint16_t* pre, float* out, size_t n, DeltaSums& sums);
void add_scaled(const float* t, float w, const float* d, float* out, size_t n);
void add(const float* a, const float* b, float* out, size_t n);
void scale(float w, const float* a, float* out, size_t n);
uint64_t keep_top(const float* d, int32_t above, uint64_t wanted, float r, float* t, size_t n);
BandTaken keep_band(const float* d, TopLimit wide, TopLimit narrow, float r, float* t, size_t n);
void keep_drawn(uint64_t key, uint64_t first, uint64_t limit, const float* d, float r, float* t, size_t n);
size_t gather_bins(const float* d, size_t n, int32_t first_bin, uint32_t bins, int32_t* out, uint64_t* above);
void count_at_most(const float* d, size_t n, const int32_t* at_most, size_t thresholds, uint64_t* counts);
uint64_t count_nonfinite(const float* values, size_t n);
uint64_t count_nonfinite16(const uint16_t* bits, uint16_t exponent, size_t n);
void elect_sum(const float* const* t, const float* w, size_t count, bool vote_weighted, bool normalize, float* out,
               size_t n);
}  // namespace scalar

// Name of the instruction set the SIMD kernels dispatch to on this CPU.
const char* simd_target();

}  // namespace rvec::kernels
