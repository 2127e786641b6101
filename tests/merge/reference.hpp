// The scalar reference of the merge tests: f32 values read from and written
// to BF16/F16/F32 bytes by plain C++, independent of the library's codecs.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include <vector>

#include "hf/model_folder.hpp"
#include "numeric/dtype.hpp"

namespace rvec::test {

inline float ref_decode(DType dtype, const std::byte* p) {
  if (dtype == DType::kF32) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  if (dtype == DType::kF16) {
    _Float16 h;
    std::memcpy(&h, &bits, 2);
    return static_cast<float>(h);
  }
  const uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &wide, 4);
  return f;
}

// Nearest bf16 by exact comparison of the two neighbours, ties to even.
inline uint16_t ref_round_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if (std::isnan(x)) return static_cast<uint16_t>((u >> 16) | 0x40);
  const uint16_t down = static_cast<uint16_t>(u >> 16), up = static_cast<uint16_t>(down + 1);
  if ((u & 0xFFFF) == 0) return down;
  auto value = [](uint16_t b) {
    if ((b & 0x7FFF) == 0x7F80) return std::copysign(std::ldexp(1.0, 128), (b & 0x8000) ? -1.0 : 1.0);
    const uint32_t w = static_cast<uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &w, 4);
    return static_cast<double>(f);
  };
  const double dd = std::fabs(x - value(down)), du = std::fabs(value(up) - x);
  return dd < du ? down : du < dd ? up : (down & 1) ? up : down;
}

inline void ref_encode(DType dtype, float x, std::byte* out) {
  if (dtype == DType::kF32) {
    std::memcpy(out, &x, 4);
  } else if (dtype == DType::kF16) {
    const _Float16 h = static_cast<_Float16>(x);
    std::memcpy(out, &h, 2);
  } else {
    const uint16_t b = ref_round_bf16(x);
    std::memcpy(out, &b, 2);
  }
}

// The first `count` values of a tensor as f32.
inline std::vector<float> ref_values(const ModelTensor& t, uint64_t count) {
  const auto bytes = t.file->map(*t.info);
  const size_t width = dtype_bits(t.info->dtype) / 8;
  std::vector<float> out(count);
  for (uint64_t i = 0; i < count; ++i) out[i] = ref_decode(t.info->dtype, bytes.data() + i * width);
  return out;
}

}  // namespace rvec::test
