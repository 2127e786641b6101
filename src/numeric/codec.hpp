// Converting tensor bytes (BF16, F16, F32, little-endian, and ggml's block
// types Q8_0, Q5_0, Q4_K, Q6_K) to and from f32.
#pragma once

#include <cstddef>
#include <span>

#include "numeric/dtype.hpp"

namespace rvec {

// in: [n] elements of `dtype` (unaligned bytes ok) -> out: [n] f32. For a
// block type `in` starts at a block and n is a multiple of its block elements.
void decode_to_f32(DType dtype, const std::byte* in, std::span<float> out);

// in: [n] f32 -> out: [n] elements of `dtype`, each rounded to nearest even;
// block types are quantised block by block as ggml does (numeric/quant.hpp),
// n a multiple of the block elements.
void encode_from_f32(DType dtype, std::span<const float> in, std::byte* out);

}  // namespace rvec
