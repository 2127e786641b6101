// Every SIMD kernel against its scalar twin, on every instruction set this CPU
// supports, bit for bit.
#include "numeric/kernels.hpp"

#include <array>
#include <gtest/gtest.h>
#include <hwy/highway.h>
#include <hwy/targets.h>

#include <bit>
#include <cmath>
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
    std::vector<uint16_t> other(n);
    kernels::f32_to_bf16(b.data(), other.data(), n);
    kernels::bf16_difference(bf_simd.data(), other.data(), simd.data(), n);
    kernels::scalar::bf16_difference(bf_simd.data(), other.data(), scalar.data(), n);
    EXPECT_TRUE(same_bits(simd, scalar)) << "bf16_difference n=" << n;
    kernels::add(a.data(), b.data(), simd.data(), n);
    kernels::scalar::add(a.data(), b.data(), scalar.data(), n);
    EXPECT_TRUE(same_bits(simd, scalar)) << "add n=" << n;
    kernels::scale(-0.3f, a.data(), simd.data(), n);
    kernels::scalar::scale(-0.3f, a.data(), scalar.data(), n);
    EXPECT_TRUE(same_bits(simd, scalar)) << "scale n=" << n;
  }
}

// The element pass's fused bf16 delta: the same bits as bf16_difference (NaN
// and Inf included), and the sums of accumulate_delta_sums over the widened
// inputs, to f64 rounding (the lanes sum in another order).
TEST_P(KernelsOnEveryTarget, Bf16DifferenceWithSumsMatchesTheUnfusedKernels) {
  std::mt19937 rng(11);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  for (size_t n : {0u, 1u, 7u, 8u, 15u, 16u, 17u, 31u, 33u, 1000u, 4099u}) {
    const auto a = tricky_floats(n, n + 8), b = tricky_floats(n, n + 9);
    std::vector<uint16_t> post(n), pre(n);
    kernels::f32_to_bf16(a.data(), post.data(), n);
    kernels::f32_to_bf16(b.data(), pre.data(), n);
    std::vector<float> fused(n), twin(n), unfused(n);
    kernels::DeltaSums ignored;
    kernels::bf16_difference_with_sums(post.data(), pre.data(), fused.data(), n, ignored);
    kernels::scalar::bf16_difference_with_sums(post.data(), pre.data(), twin.data(), n, ignored);
    kernels::bf16_difference(post.data(), pre.data(), unfused.data(), n);
    EXPECT_TRUE(same_bits(fused, unfused)) << "n=" << n;
    EXPECT_TRUE(same_bits(twin, unfused)) << "n=" << n;

    std::vector<float> p(n), q(n);
    for (size_t i = 0; i < n; ++i) p[i] = dist(rng), q[i] = p[i] + dist(rng) / 10;
    kernels::f32_to_bf16(p.data(), pre.data(), n);
    kernels::f32_to_bf16(q.data(), post.data(), n);
    kernels::bf16_to_f32(pre.data(), p.data(), n);
    kernels::bf16_to_f32(post.data(), q.data(), n);
    kernels::DeltaSums simd{1, 2, 3, 4}, scalar{1, 2, 3, 4}, reference{1, 2, 3, 4};
    kernels::bf16_difference_with_sums(post.data(), pre.data(), fused.data(), n, simd);
    kernels::scalar::bf16_difference_with_sums(post.data(), pre.data(), twin.data(), n, scalar);
    kernels::scalar::accumulate_delta_sums(p.data(), q.data(), nullptr, n, reference);
    for (const kernels::DeltaSums* got : {&simd, &scalar}) {
      EXPECT_NEAR(got->base_sq, reference.base_sq, 1e-12 * reference.base_sq) << "n=" << n;
      EXPECT_NEAR(got->a_sq, reference.a_sq, 1e-12 * reference.a_sq) << "n=" << n;
      EXPECT_EQ(got->b_sq, 3) << "n=" << n;
      EXPECT_EQ(got->dot, 4) << "n=" << n;
    }
  }
}

// NaN and Inf counts: the random bits of tricky_floats hold many (an
// exponent of all ones), and a run of nothing else fills whole vectors.
TEST_P(KernelsOnEveryTarget, NonfiniteCountsMatchScalarTwinsAndIsfinite) {
  for (size_t n : {0u, 1u, 15u, 16u, 17u, 31u, 32u, 33u, 1000u, 4099u}) {
    auto values = tricky_floats(n, n + 4);
    for (size_t i = n / 2; i < n / 2 + std::min<size_t>(n / 2, 70); ++i) values[i] = i % 2 ? -INFINITY : NAN;
    uint64_t by_isfinite = 0;
    for (float v : values) by_isfinite += !std::isfinite(v);
    EXPECT_EQ(kernels::count_nonfinite(values.data(), n), by_isfinite) << "n=" << n;
    EXPECT_EQ(kernels::scalar::count_nonfinite(values.data(), n), by_isfinite) << "n=" << n;
    std::vector<uint16_t> bits(n);
    for (size_t i = 0; i < n; ++i) bits[i] = static_cast<uint16_t>(std::bit_cast<uint32_t>(values[i]) >> 16);  // bf16
    EXPECT_EQ(kernels::count_nonfinite16(bits.data(), 0x7F80, n), by_isfinite) << "n=" << n;
    for (uint16_t exponent : {uint16_t{0x7F80}, uint16_t{0x7C00}}) {
      EXPECT_EQ(kernels::count_nonfinite16(bits.data(), exponent, n),
                kernels::scalar::count_nonfinite16(bits.data(), exponent, n))
          << "n=" << n << " exponent=" << exponent;
    }
  }
}

// The trimming kernels: thresholds around the magnitudes present (ties
// included), DARE's draws at several offsets, and the sign election with
// zeros, NaN and signed zeros in the vote.
TEST_P(KernelsOnEveryTarget, TrimmingKernelsMatchScalarTwinsBitForBit) {
  for (size_t n : {0u, 1u, 7u, 16u, 17u, 1000u, 4099u}) {
    const auto d = tricky_floats(n, n + 4), s = tricky_floats(n, n + 5), x = tricky_floats(n, n + 6),
               u = tricky_floats(n, n + 7);
    std::vector<float> simd(n), scalar(n);
    for (const int32_t above : {-1, 0, 0x3F800000, 0x3F808000, 0x7F800000, 0x7FFFFFFF, 0x12345678}) {
      for (const uint64_t wanted : {0ull, 1ull, 3ull, 50ull, 1ull << 40}) {
        const uint64_t taken = kernels::keep_top(d.data(), above, wanted, 1.5f, simd.data(), n);
        EXPECT_EQ(taken, kernels::scalar::keep_top(d.data(), above, wanted, 1.5f, scalar.data(), n));
        EXPECT_TRUE(same_bits(simd, scalar)) << "keep_top n=" << n << " above=" << above << " wanted=" << wanted;
      }
    }
    // Bands with both limits among the magnitudes present (and equal to each
    // other), each with budgets for its ties from none to all.
    for (const int32_t wide : {-1, 0, 0x3F800000, 0x3F808000, 0x7F800000}) {
      for (const int32_t narrow : {wide, 0x3F808000, 0x50000000, 0x7FFFFFFF}) {
        for (const auto& [wide_wanted, narrow_wanted] :
             {std::pair{0ull, 0ull}, {1ull, 0ull}, {3ull, 2ull}, {50ull, 7ull}, {1ull << 40, 1ull << 40}}) {
          const kernels::TopLimit w{wide, wide_wanted}, v{narrow, narrow_wanted};
          const kernels::BandTaken got = kernels::keep_band(d.data(), w, v, 1.5f, simd.data(), n);
          const kernels::BandTaken want = kernels::scalar::keep_band(d.data(), w, v, 1.5f, scalar.data(), n);
          EXPECT_EQ(got.wide, want.wide);
          EXPECT_EQ(got.narrow, want.narrow);
          EXPECT_TRUE(same_bits(simd, scalar)) << "keep_band n=" << n << " wide=" << wide << " narrow=" << narrow;
        }
      }
    }
    for (const auto& [first_bin, bins] : {std::pair{0, 1u << 15}, {0x3F80, 1u}, {0x3F70, 16u}, {0x7F80, 128u}, {5, 0u}}) {
      std::vector<int32_t> simd_bits(n), scalar_bits(n);
      uint64_t simd_above = 3, scalar_above = 3;
      const size_t found = kernels::gather_bins(d.data(), n, first_bin, bins, simd_bits.data(), &simd_above);
      ASSERT_EQ(found, kernels::scalar::gather_bins(d.data(), n, first_bin, bins, scalar_bits.data(), &scalar_above));
      EXPECT_EQ(simd_above, scalar_above) << "gather_bins n=" << n << " first_bin=" << first_bin;
      EXPECT_TRUE(std::equal(simd_bits.begin(), simd_bits.begin() + static_cast<ptrdiff_t>(found), scalar_bits.begin()))
          << "gather_bins n=" << n << " first_bin=" << first_bin;
    }
    const int32_t limits[] = {0, 0x358637BD, 0x3F808000, 0x7F800000, 0x7FFFFFFF};
    uint64_t simd_counts[5] = {1, 2, 3, 4, 5}, scalar_counts[5] = {1, 2, 3, 4, 5};
    kernels::count_at_most(d.data(), n, limits, 5, simd_counts);
    kernels::scalar::count_at_most(d.data(), n, limits, 5, scalar_counts);
    EXPECT_TRUE(std::equal(simd_counts, simd_counts + 5, scalar_counts)) << "count_at_most n=" << n;
    // Runs of equal values (about half of all elements): the last wanted ones
    // inside one vector, and budgets that run out inside the kernels' first
    // 256-element chunk (which holds 130 equal ones: 128, 129), exactly at its
    // end (130), just after it (131) and chunks later.
    std::vector<float> runs(n);
    for (size_t i = 0; i < n; ++i) runs[i] = (i / 5) % 2 == 0 ? -2.5f : 2.5f + static_cast<float>(i % 3);
    for (const uint64_t wanted : {1ull, 4ull, 9ull, 33ull, 128ull, 129ull, 130ull, 131ull, 1000ull, 2047ull}) {
      const uint64_t taken = kernels::keep_top(runs.data(), 0x40200000, wanted, 2.0f, simd.data(), n);
      EXPECT_EQ(taken, kernels::scalar::keep_top(runs.data(), 0x40200000, wanted, 2.0f, scalar.data(), n));
      EXPECT_TRUE(same_bits(simd, scalar)) << "keep_top runs n=" << n << " wanted=" << wanted;
      const kernels::TopLimit wide{0x40200000, wanted + 2}, narrow{0x40200000, wanted};
      const kernels::BandTaken got = kernels::keep_band(runs.data(), wide, narrow, 2.0f, simd.data(), n);
      const kernels::BandTaken want = kernels::scalar::keep_band(runs.data(), wide, narrow, 2.0f, scalar.data(), n);
      EXPECT_EQ(got.wide, want.wide);
      EXPECT_EQ(got.narrow, want.narrow);
      EXPECT_TRUE(same_bits(simd, scalar)) << "keep_band runs n=" << n << " wanted=" << wanted;
    }
    for (const uint64_t first : {0ull, 12345ull, (1ull << 40) + 7}) {
      for (const uint64_t limit : {0ull, 1ull << 52, (1ull << 53) - 1, 1ull << 53}) {
        kernels::keep_drawn(0xDEADBEEFull + n, first, limit, d.data(), 2.0f, simd.data(), n);
        kernels::scalar::keep_drawn(0xDEADBEEFull + n, first, limit, d.data(), 2.0f, scalar.data(), n);
        EXPECT_TRUE(same_bits(simd, scalar)) << "keep_drawn n=" << n << " first=" << first << " limit=" << limit;
      }
    }
    // Weights that cancel (q = 0), a negative one, weight 1 alone (the fast
    // path), and the vectors' values with zeros, NaN and signed zeros in the vote.
    const float* vectors[] = {d.data(), s.data(), x.data(), u.data()};
    for (const auto& weights : {std::array{0.75f, -0.75f, 1.5f, -2.0f}, std::array{1.0f, 1.0f, -1.0f, 3.0f}}) {
      for (const size_t count : {1u, 2u, 4u}) {
        for (const bool vote_weighted : {false, true}) {
          for (const bool normalize : {false, true}) {
            kernels::elect_sum(vectors, weights.data(), count, vote_weighted, normalize, simd.data(), n);
            kernels::scalar::elect_sum(vectors, weights.data(), count, vote_weighted, normalize, scalar.data(), n);
            EXPECT_TRUE(same_bits(simd, scalar)) << "elect_sum n=" << n << " count=" << count << " w0=" << weights[0]
                                                 << " vote_weighted=" << vote_weighted << " normalize=" << normalize;
          }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, KernelsOnEveryTarget, ::testing::ValuesIn(hwy::SupportedAndGeneratedTargets()),
                         [](const auto& info) { return std::string(hwy::TargetName(info.param)); });

TEST(Kernels, ReportsTheDispatchedTarget) { EXPECT_STRNE(kernels::simd_target(), "none"); }

}  // namespace
}  // namespace rvec
