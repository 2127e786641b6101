// ggml's block quantisation (the tensor types of GGUF files), bit for bit as
// ggml's reference quantisers make them for model files:
//
//   Q8_0  32 elements: f16 scale d = amax / 127, int8 q = round(x / d)   34 bytes
//   Q5_0  32 elements: f16 d = max / -16, 5-bit q                       22 bytes
//   Q4_K  256 elements: 8 sub-blocks of 32 with 6-bit scales and mins,
//         f16 super-block scales d and dmin, 4-bit q                    144 bytes
//   Q6_K  256 elements: 16 sub-blocks of 16 with int8 scales, f16 d,
//         6-bit q                                                        210 bytes
//
// quantize_* follow quantize_row_{q8_0,q5_0,q4_K,q6_K}_ref of ggml-quants.c
// (what llama-quantize uses without an importance matrix) operation for
// operation in f32, without FMA contraction, so the bytes are identical to
// ggml's; tests compare them with ggml's own library where it is installed.
// One deliberate difference: a block holding NaN, which ggml's C code turns
// into undefined behaviour (a NaN cast to an integer), gets all-NaN scales
// here, so it reads back as NaN.
//
// These are plain scalar functions; blocks are independent, so callers may
// quantise any block-aligned range of a row on any thread.
#pragma once

#include <cstddef>
#include <span>

namespace rvec::quant {

inline constexpr size_t kQ8_0Elements = 32, kQ8_0Bytes = 34;
inline constexpr size_t kQ5_0Elements = 32, kQ5_0Bytes = 22;
inline constexpr size_t kQ4_KElements = 256, kQ4_KBytes = 144;
inline constexpr size_t kQ6_KElements = 256, kQ6_KBytes = 210;

// in.size() must be a multiple of the type's block elements; out holds
// in.size() / elements * bytes bytes (any alignment).
void quantize_q8_0(std::span<const float> in, std::byte* out);
void quantize_q5_0(std::span<const float> in, std::byte* out);
void quantize_q4_k(std::span<const float> in, std::byte* out);
void quantize_q6_k(std::span<const float> in, std::byte* out);

// The inverse, as ggml's dequantize_row_*: out.size() a multiple of the block elements.
void dequantize_q8_0(const std::byte* in, std::span<float> out);
void dequantize_q5_0(const std::byte* in, std::span<float> out);
void dequantize_q4_k(const std::byte* in, std::span<float> out);
void dequantize_q6_k(const std::byte* in, std::span<float> out);

}  // namespace rvec::quant
