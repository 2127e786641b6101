#include "numeric/convert.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "numeric/codec.hpp"

namespace rvec {
namespace {

uint32_t bits_of(float f) { return std::bit_cast<uint32_t>(f); }

// Independent reference: of the two bf16 neighbours of `x`, the nearer in
// exact (double) arithmetic; ties to the even one; beyond the largest finite
// bf16 the next step up is treated as infinity (value 2^128), as IEEE does.
uint16_t reference_bf16(float x) {
  const uint32_t u = bits_of(x);
  const uint16_t down = static_cast<uint16_t>(u >> 16);
  const uint16_t up = static_cast<uint16_t>(down + 1);
  auto value = [](uint16_t b) {
    if ((b & 0x7FFF) == 0x7F80) return std::copysign(std::ldexp(1.0, 128), (b & 0x8000) ? -1.0 : 1.0);
    return static_cast<double>(bf16_to_f32(b));
  };
  if ((u & 0xFFFF) == 0) return down;
  const double dx = std::fabs(static_cast<double>(x) - value(down));
  const double ux = std::fabs(value(up) - static_cast<double>(x));
  if (dx < ux) return down;
  if (ux < dx) return up;
  return (down & 1) ? up : down;
}

TEST(Bf16, MatchesExactReferenceOnRandomAndEdgeValues) {
  std::mt19937_64 rng(42);
  std::vector<uint32_t> cases = {0x00000000, 0x80000000, 0x00000001, 0x807FFFFF, 0x3F800000, 0x3F808000,
                                 0x3F818000, 0x3F80FFFF, 0x7F7FFFFF, 0x7F7F8000, 0x7F7F7FFF, 0xFF7FFFFF,
                                 0x7F800000, 0xFF800000, 0x00008000, 0x00018000};
  for (int i = 0; i < 2'000'000; ++i) cases.push_back(static_cast<uint32_t>(rng()));
  for (uint32_t u : cases) {
    const float x = std::bit_cast<float>(u);
    if (std::isnan(x)) {
      EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(x)))) << std::hex << u;
      continue;
    }
    ASSERT_EQ(f32_to_bf16(x), reference_bf16(x)) << "input bits 0x" << std::hex << u;
  }
}

TEST(Bf16, ToF32IsExactForEveryValue) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const float f = bf16_to_f32(static_cast<uint16_t>(b));
    if (std::isnan(f)) continue;
    EXPECT_EQ(f32_to_bf16(f), b);
  }
}

TEST(F16, ToF32MatchesCompilerForAll65536Values) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const uint16_t bits = static_cast<uint16_t>(b);
    _Float16 h;
    std::memcpy(&h, &bits, 2);
    const float expected = static_cast<float>(h);
    const float got = f16_to_f32(bits);
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(got));
    } else {
      ASSERT_EQ(bits_of(got), bits_of(expected)) << std::hex << b;
    }
  }
}

TEST(F16, FromF32MatchesCompilerRoundToNearestEven) {
  std::mt19937_64 rng(7);
  std::vector<float> cases = {0.0f, -0.0f, 65504.0f, 65519.99f, 65520.0f, 1e-8f, 2.98e-8f, 2.9802322e-8f,
                              5.96e-8f, 6.1e-5f, 1.0f / 3.0f, INFINITY, -INFINITY};
  for (int i = 0; i < 1'000'000; ++i) cases.push_back(std::bit_cast<float>(static_cast<uint32_t>(rng())));
  // Dense coverage of the f16 range, including subnormals.
  for (int i = 0; i < 1'000'000; ++i) {
    cases.push_back(std::ldexp(static_cast<float>(rng() % 4096) / 4096.0f, static_cast<int>(rng() % 44) - 28));
  }
  for (float x : cases) {
    const _Float16 h = static_cast<_Float16>(x);
    uint16_t expected;
    std::memcpy(&expected, &h, 2);
    if (std::isnan(x)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(x))));
      continue;
    }
    ASSERT_EQ(f32_to_f16(x), expected) << "x = " << x << " bits 0x" << std::hex << bits_of(x);
  }
}

TEST(Codec, RoundTripsEveryArithmeticDtype) {
  const std::vector<float> values = {0.0f, -1.5f, 3.25f, 1e-3f, -65504.0f};
  for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32}) {
    std::vector<std::byte> bytes(values.size() * dtype_bits(dtype) / 8);
    encode_from_f32(dtype, values, bytes.data());
    std::vector<float> back(values.size());
    decode_to_f32(dtype, bytes.data(), back);
    for (size_t i = 0; i < values.size(); ++i) {
      const float expected = dtype == DType::kF32   ? values[i]
                             : dtype == DType::kF16 ? f16_to_f32(f32_to_f16(values[i]))
                                                    : bf16_to_f32(f32_to_bf16(values[i]));
      EXPECT_EQ(back[i], expected) << dtype_name(dtype);
    }
  }
}

}  // namespace
}  // namespace rvec
