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
// out[i] = a[i] - b[i]
void subtract(const float* a, const float* b, float* out, size_t n);
// out[i] = t[i] + w * d[i]   (the product rounded to f32, then the sum)
void add_scaled(const float* t, float w, const float* d, float* out, size_t n);

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

namespace scalar {
void accumulate_delta_sums(const float* pre, const float* a, const float* b, size_t n, DeltaSums& sums);
void bf16_to_f32(const uint16_t* in, float* out, size_t n);
void f32_to_bf16(const float* in, uint16_t* out, size_t n);
void subtract(const float* a, const float* b, float* out, size_t n);
void add_scaled(const float* t, float w, const float* d, float* out, size_t n);
}  // namespace scalar

// Name of the instruction set the SIMD kernels dispatch to on this CPU.
const char* simd_target();

}  // namespace rvec::kernels
