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

namespace scalar {
void bf16_to_f32(const uint16_t* in, float* out, size_t n);
void f32_to_bf16(const float* in, uint16_t* out, size_t n);
void subtract(const float* a, const float* b, float* out, size_t n);
void add_scaled(const float* t, float w, const float* d, float* out, size_t n);
}  // namespace scalar

// Name of the instruction set the SIMD kernels dispatch to on this CPU.
const char* simd_target();

}  // namespace rvec::kernels
