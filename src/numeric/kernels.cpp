// Highway's foreach_target re-includes this file once per instruction set.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "numeric/kernels.cpp"
#include <hwy/foreach_target.h>  // must come before highway.h
#include <hwy/highway.h>

#include "numeric/convert.hpp"
#include "numeric/kernels.hpp"

HWY_BEFORE_NAMESPACE();
namespace rvec::kernels::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Each kernel runs whole vectors with SIMD and hands the tail (< one vector)
// to its scalar twin, so the two can only differ if the SIMD body is wrong.

void Bf16ToF32(const uint16_t* HWY_RESTRICT in, float* HWY_RESTRICT out, size_t n) {
  const hn::ScalableTag<float> df;
  const hn::RebindToUnsigned<decltype(df)> du32;
  const hn::Rebind<uint16_t, decltype(df)> du16;
  const size_t lanes = hn::Lanes(df);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    const auto wide = hn::PromoteTo(du32, hn::LoadU(du16, in + i));
    hn::StoreU(hn::BitCast(df, hn::ShiftLeft<16>(wide)), df, out + i);
  }
  scalar::bf16_to_f32(in + i, out + i, n - i);
}

void F32ToBf16(const float* HWY_RESTRICT in, uint16_t* HWY_RESTRICT out, size_t n) {
  const hn::ScalableTag<float> df;
  const hn::RebindToUnsigned<decltype(df)> du32;
  const hn::RebindToSigned<decltype(df)> di32;
  const hn::Rebind<uint16_t, decltype(df)> du16;
  const size_t lanes = hn::Lanes(df);
  const auto abs_mask = hn::Set(du32, 0x7FFFFFFFu);
  const auto inf_bits = hn::Set(du32, 0x7F800000u);
  const auto round_bias = hn::Set(du32, 0x7FFFu);
  const auto one = hn::Set(du32, 1u);
  const auto quiet = hn::Set(du32, 0x0040u);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    const auto u = hn::BitCast(du32, hn::LoadU(df, in + i));
    // Round to nearest even: add 0x7FFF plus the lowest kept bit, truncate.
    const auto lsb = hn::And(hn::ShiftRight<16>(u), one);
    const auto rounded = hn::ShiftRight<16>(hn::Add(u, hn::Add(round_bias, lsb)));
    const auto nan_bits = hn::Or(hn::ShiftRight<16>(u), quiet);
    const auto is_nan = hn::Gt(hn::BitCast(di32, hn::And(u, abs_mask)), hn::BitCast(di32, inf_bits));
    const auto result = hn::IfThenElse(hn::RebindMask(du32, is_nan), nan_bits, rounded);
    hn::StoreU(hn::DemoteTo(du16, hn::BitCast(di32, result)), du16, out + i);
  }
  scalar::f32_to_bf16(in + i, out + i, n - i);
}

void Subtract(const float* HWY_RESTRICT a, const float* HWY_RESTRICT b, float* HWY_RESTRICT out, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    hn::StoreU(hn::Sub(hn::LoadU(df, a + i), hn::LoadU(df, b + i)), df, out + i);
  }
  scalar::subtract(a + i, b + i, out + i, n - i);
}

void AddScaled(const float* HWY_RESTRICT t, float w, const float* HWY_RESTRICT d, float* HWY_RESTRICT out,
               size_t n) {
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  const auto vw = hn::Set(df, w);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    // Mul then Add, deliberately not MulAdd: the scalar twin rounds twice too.
    hn::StoreU(hn::Add(hn::LoadU(df, t + i), hn::Mul(vw, hn::LoadU(df, d + i))), df, out + i);
  }
  scalar::add_scaled(t + i, w, d + i, out + i, n - i);
}

void AccumulateDeltaSums(const float* HWY_RESTRICT pre, const float* HWY_RESTRICT a, const float* HWY_RESTRICT b,
                         size_t n, DeltaSums& sums) {
  const hn::ScalableTag<double> dd;
  const hn::Rebind<float, decltype(dd)> df;  // half-width f32 vectors, widened to f64
  const size_t lanes = hn::Lanes(dd);
  auto base_sq = hn::Zero(dd), a_sq = hn::Zero(dd), b_sq = hn::Zero(dd), dot = hn::Zero(dd);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    const auto p = hn::PromoteTo(dd, hn::LoadU(df, pre + i));
    const auto da = hn::Sub(hn::PromoteTo(dd, hn::LoadU(df, a + i)), p);
    base_sq = hn::MulAdd(p, p, base_sq);
    a_sq = hn::MulAdd(da, da, a_sq);
    if (b != nullptr) {
      const auto db = hn::Sub(hn::PromoteTo(dd, hn::LoadU(df, b + i)), p);
      b_sq = hn::MulAdd(db, db, b_sq);
      dot = hn::MulAdd(da, db, dot);
    }
  }
  sums.base_sq += hn::GetLane(hn::SumOfLanes(dd, base_sq));
  sums.a_sq += hn::GetLane(hn::SumOfLanes(dd, a_sq));
  sums.b_sq += hn::GetLane(hn::SumOfLanes(dd, b_sq));
  sums.dot += hn::GetLane(hn::SumOfLanes(dd, dot));
  scalar::accumulate_delta_sums(pre + i, a + i, b == nullptr ? nullptr : b + i, n - i, sums);
}

}  // namespace rvec::kernels::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace rvec::kernels {

HWY_EXPORT(Bf16ToF32);
HWY_EXPORT(F32ToBf16);
HWY_EXPORT(Subtract);
HWY_EXPORT(AddScaled);
HWY_EXPORT(AccumulateDeltaSums);

void accumulate_delta_sums(const float* pre, const float* a, const float* b, size_t n, DeltaSums& sums) {
  HWY_DYNAMIC_DISPATCH(AccumulateDeltaSums)(pre, a, b, n, sums);
}

void bf16_to_f32(const uint16_t* in, float* out, size_t n) { HWY_DYNAMIC_DISPATCH(Bf16ToF32)(in, out, n); }
void f32_to_bf16(const float* in, uint16_t* out, size_t n) { HWY_DYNAMIC_DISPATCH(F32ToBf16)(in, out, n); }
void subtract(const float* a, const float* b, float* out, size_t n) {
  HWY_DYNAMIC_DISPATCH(Subtract)(a, b, out, n);
}
void add_scaled(const float* t, float w, const float* d, float* out, size_t n) {
  HWY_DYNAMIC_DISPATCH(AddScaled)(t, w, d, out, n);
}

const char* simd_target() {
  const auto targets = hwy::SupportedAndGeneratedTargets();  // best first
  return targets.empty() ? "none" : hwy::TargetName(targets.front());
}

namespace scalar {

void accumulate_delta_sums(const float* pre, const float* a, const float* b, size_t n, DeltaSums& sums) {
  for (size_t i = 0; i < n; ++i) {
    const double p = pre[i], da = static_cast<double>(a[i]) - p;
    sums.base_sq += p * p;
    sums.a_sq += da * da;
    if (b != nullptr) {
      const double db = static_cast<double>(b[i]) - p;
      sums.b_sq += db * db;
      sums.dot += da * db;
    }
  }
}

void bf16_to_f32(const uint16_t* in, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = rvec::bf16_to_f32(in[i]);
}
void f32_to_bf16(const float* in, uint16_t* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = rvec::f32_to_bf16(in[i]);
}
void subtract(const float* a, const float* b, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = a[i] - b[i];
}
void add_scaled(const float* t, float w, const float* d, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const float product = w * d[i];
    out[i] = t[i] + product;
  }
}

}  // namespace scalar
}  // namespace rvec::kernels
#endif  // HWY_ONCE
