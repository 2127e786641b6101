// Every SIMD kernel against its scalar twin, on every instruction set this CPU
// supports, bit for bit.
#include "numeric/kernels.hpp"

#include <gtest/gtest.h>
#include <hwy/highway.h>
#include <hwy/targets.h>

#include <cstring>
#include <random>
#include <vector>

namespace rvec {
namespace {

std::vector<float> tricky_floats(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> out(n);
  const uint32_t specials[] = {0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001,
                               0x00000001, 0x807FFFFF, 0x7F7FFFFF, 0x3F808000, 0x3F818000, 0x33800000};
  for (size_t i = 0; i < n; ++i) {
    uint32_t bits = static_cast<uint32_t>(rng());
    if (i % 7 == 0) bits = specials[(i / 7) % std::size(specials)];
    if (i % 3 == 0) bits = (bits & 0x807FFFFF) | (static_cast<uint32_t>(100 + rng() % 50) << 23);  // moderate
    std::memcpy(&out[i], &bits, 4);
  }
  return out;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
}

class KernelsOnEveryTarget : public ::testing::TestWithParam<int64_t> {
 protected:
  void SetUp() override { hwy::SetSupportedTargetsForTest(GetParam()); }
  void TearDown() override { hwy::SetSupportedTargetsForTest(0); }
};

TEST_P(KernelsOnEveryTarget, MatchScalarTwinsBitForBit) {
  for (size_t n : {0u, 1u, 7u, 8u, 15u, 16u, 17u, 1000u, 4099u}) {
    const auto a = tricky_floats(n, n + 1), b = tricky_floats(n, n + 2), c = tricky_floats(n, n + 3);
    std::vector<float> simd(n), scalar(n);
    kernels::subtract(a.data(), b.data(), simd.data(), n);
    kernels::scalar::subtract(a.data(), b.data(), scalar.data(), n);
    EXPECT_TRUE(same_bits(simd, scalar)) << "subtract n=" << n;
    for (float w : {0.25f, -1.5f, 1e30f, 0.0f}) {
      kernels::add_scaled(a.data(), w, b.data(), simd.data(), n);
      kernels::scalar::add_scaled(a.data(), w, b.data(), scalar.data(), n);
      EXPECT_TRUE(same_bits(simd, scalar)) << "add_scaled n=" << n << " w=" << w;
    }
    std::vector<uint16_t> bf_simd(n), bf_scalar(n);
    kernels::f32_to_bf16(c.data(), bf_simd.data(), n);
    kernels::scalar::f32_to_bf16(c.data(), bf_scalar.data(), n);
    EXPECT_EQ(bf_simd, bf_scalar) << "f32_to_bf16 n=" << n;
    kernels::bf16_to_f32(bf_simd.data(), simd.data(), n);
    kernels::scalar::bf16_to_f32(bf_simd.data(), scalar.data(), n);
    EXPECT_TRUE(same_bits(simd, scalar)) << "bf16_to_f32 n=" << n;
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, KernelsOnEveryTarget, ::testing::ValuesIn(hwy::SupportedAndGeneratedTargets()),
                         [](const auto& info) { return std::string(hwy::TargetName(info.param)); });

TEST(Kernels, ReportsTheDispatchedTarget) { EXPECT_STRNE(kernels::simd_target(), "none"); }

}  // namespace
}  // namespace rvec
