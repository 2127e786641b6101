// Scalar conversions between f32 and the 16-bit float formats.
//
// These are the reference ("scalar twin") definitions: every SIMD kernel in
// numeric/ is tested bit for bit against them. Rounding is IEEE round to
// nearest, ties to even; subnormals are kept (no FTZ/DAZ); NaN stays NaN.
#pragma once

#include <bit>
#include <cstdint>

namespace rvec {

inline float bf16_to_f32(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

inline uint16_t f32_to_bf16(float value) {
  const uint32_t u = std::bit_cast<uint32_t>(value);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) {  // NaN: keep sign, force quiet bit
    return static_cast<uint16_t>((u >> 16) | 0x0040u);
  }
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

float f16_to_f32(uint16_t bits);
uint16_t f32_to_f16(float value);

}  // namespace rvec
