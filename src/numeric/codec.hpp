// Converting tensor bytes (BF16, F16, F32, little-endian) to and from f32.
#pragma once

#include <cstddef>
#include <span>

#include "numeric/dtype.hpp"

namespace rvec {

// in: [n] elements of `dtype` (unaligned bytes ok) -> out: [n] f32
void decode_to_f32(DType dtype, const std::byte* in, std::span<float> out);

// in: [n] f32 -> out: [n] elements of `dtype`, each rounded to nearest even.
void encode_from_f32(DType dtype, std::span<const float> in, std::byte* out);

}  // namespace rvec
