// Highway's foreach_target re-includes this file once per instruction set.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "numeric/kernels.cpp"
#include <hwy/foreach_target.h>  // must come before highway.h
#include <hwy/highway.h>

#include <algorithm>
#include <bit>
#include <cstring>

#include "numeric/convert.hpp"
#include "numeric/kernels.hpp"

namespace rvec::kernels::scalar {
// elect_sum for elements [first, n) (the SIMD kernel's tail).
void elect_sum_from(const float* const* t, const float* w, size_t count, bool vote_weighted, bool normalize,
                    float* out, size_t first, size_t n);
}  // namespace rvec::kernels::scalar

HWY_BEFORE_NAMESPACE();
namespace rvec::kernels::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Each kernel runs whole vectors with SIMD and hands the tail (< one vector)
// to its scalar twin, so the two can only differ if the SIMD body is wrong.

// One vector of f32 from the bf16 values at `in` (exact: bf16 is f32's high half).
template <class DF>
hn::Vec<DF> LoadBf16(DF df, const uint16_t* HWY_RESTRICT in) {
  const hn::RebindToUnsigned<DF> du32;
  const hn::Rebind<uint16_t, DF> du16;
  return hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(du32, hn::LoadU(du16, in))));
}

void Bf16ToF32(const uint16_t* HWY_RESTRICT in, float* HWY_RESTRICT out, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) hn::StoreU(LoadBf16(df, in + i), df, out + i);
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

void Bf16Difference(const uint16_t* HWY_RESTRICT a, const uint16_t* HWY_RESTRICT b, float* HWY_RESTRICT out, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) hn::StoreU(hn::Sub(LoadBf16(df, a + i), LoadBf16(df, b + i)), df, out + i);
  scalar::bf16_difference(a + i, b + i, out + i, n - i);
}

void Subtract(const float* a, const float* HWY_RESTRICT b, float* out, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    hn::StoreU(hn::Sub(hn::LoadU(df, a + i), hn::LoadU(df, b + i)), df, out + i);
  }
  scalar::subtract(a + i, b + i, out + i, n - i);
}

void AddScaled(const float* t, float w, const float* HWY_RESTRICT d, float* out, size_t n) {
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

void Add(const float* a, const float* HWY_RESTRICT b, float* out, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) hn::StoreU(hn::Add(hn::LoadU(df, a + i), hn::LoadU(df, b + i)), df, out + i);
  scalar::add(a + i, b + i, out + i, n - i);
}

void Scale(float w, const float* HWY_RESTRICT a, float* HWY_RESTRICT out, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  const auto vw = hn::Set(df, w);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) hn::StoreU(hn::Mul(vw, hn::LoadU(df, a + i)), df, out + i);
  scalar::scale(w, a + i, out + i, n - i);
}

// bits(d) of a vector of floats, as int32 lanes.
template <class DF>
auto MagnitudeBits(DF, hn::Vec<DF> d) {
  const hn::RebindToSigned<DF> di;
  return hn::And(hn::BitCast(di, d), hn::Set(di, 0x7FFFFFFF));
}

// The trims walk chunks of kKeepChunk elements. A chunk is written as if
// every element equal to a threshold were still wanted (or, once none is, as
// if none were), counting the equal ones in vector lanes; a chunk holding
// more of them than are still wanted, at most one per limit and call, is
// rewritten by the scalar twin. So no budget is carried from vector to vector.
constexpr size_t kKeepChunk = 256;

// Minus the number of true lanes of `mask`, added to `count` lane by lane.
template <class DI, class M>
hn::Vec<DI> CountInto(DI di, hn::Vec<DI> count, M mask) {
  return hn::Add(count, hn::VecFromMask(di, mask));
}

template <class DI>
uint64_t LaneTotal(DI di, hn::Vec<DI> minus_count) {
  return static_cast<uint64_t>(-static_cast<int64_t>(hn::GetLane(hn::SumOfLanes(di, minus_count))));
}

// All lanes true when `wanted` > 0, else none: whether equal elements are in.
template <class DI>
auto EqualsWanted(DI di, uint64_t wanted) {
  return hn::FirstN(di, wanted > 0 ? hn::Lanes(di) : 0);
}

uint64_t KeepTop(const float* HWY_RESTRICT d, int32_t above, uint64_t wanted, float r, float* HWY_RESTRICT t,
                 size_t n) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const size_t lanes = hn::Lanes(df);
  const auto vabove = hn::Set(di, above);
  const auto vr = hn::Set(df, r);
  const size_t whole = n - n % lanes;  // the elements in whole vectors
  uint64_t taken = 0;
  size_t i = 0;
  while (i < whole) {
    const size_t end = std::min(whole, i + kKeepChunk);
    const uint64_t left = wanted - taken;
    const auto equal_in = EqualsWanted(di, left);
    auto equal = hn::Zero(di);
    for (size_t j = i; j < end; j += lanes) {
      const auto x = hn::LoadU(df, d + j);
      const auto bits = MagnitudeBits(df, x);
      const auto is_equal = hn::Eq(bits, vabove);
      equal = CountInto(di, equal, is_equal);
      const auto keep = hn::Or(hn::Gt(bits, vabove), hn::And(is_equal, equal_in));
      hn::StoreU(hn::IfThenElseZero(hn::RebindMask(df, keep), hn::Mul(x, vr)), df, t + j);
    }
    const uint64_t count = left > 0 ? LaneTotal(di, equal) : 0;
    taken += count <= left ? count : scalar::keep_top(d + i, above, left, r, t + i, end - i);
    i = end;
  }
  return taken + scalar::keep_top(d + i, above, wanted - taken, r, t + i, n - i);
}

// Like KeepTop, for two limits.
BandTaken KeepBand(const float* HWY_RESTRICT d, TopLimit wide, TopLimit narrow, float r, float* HWY_RESTRICT t,
                   size_t n) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const size_t lanes = hn::Lanes(df);
  const auto vwide = hn::Set(di, wide.threshold), vnarrow = hn::Set(di, narrow.threshold);
  const auto vr = hn::Set(df, r);
  const size_t whole = n - n % lanes;
  BandTaken taken;
  size_t i = 0;
  while (i < whole) {
    const size_t end = std::min(whole, i + kKeepChunk);
    const uint64_t wide_left = wide.wanted - taken.wide, narrow_left = narrow.wanted - taken.narrow;
    const auto wide_equal_in = EqualsWanted(di, wide_left), narrow_equal_in = EqualsWanted(di, narrow_left);
    auto wide_equal = hn::Zero(di), narrow_equal = hn::Zero(di);
    for (size_t j = i; j < end; j += lanes) {
      const auto x = hn::LoadU(df, d + j);
      const auto bits = MagnitudeBits(df, x);
      const auto is_wide = hn::Eq(bits, vwide), is_narrow = hn::Eq(bits, vnarrow);
      wide_equal = CountInto(di, wide_equal, is_wide);
      narrow_equal = CountInto(di, narrow_equal, is_narrow);
      const auto in_wide = hn::Or(hn::Gt(bits, vwide), hn::And(is_wide, wide_equal_in));
      const auto in_narrow = hn::Or(hn::Gt(bits, vnarrow), hn::And(is_narrow, narrow_equal_in));
      hn::StoreU(hn::IfThenElseZero(hn::RebindMask(df, hn::AndNot(in_narrow, in_wide)), hn::Mul(x, vr)), df, t + j);
    }
    const uint64_t wide_count = wide_left > 0 ? LaneTotal(di, wide_equal) : 0;
    const uint64_t narrow_count = narrow_left > 0 ? LaneTotal(di, narrow_equal) : 0;
    if (wide_count <= wide_left && narrow_count <= narrow_left) {
      taken.wide += wide_count;
      taken.narrow += narrow_count;
    } else {
      const BandTaken part =
          scalar::keep_band(d + i, {wide.threshold, wide_left}, {narrow.threshold, narrow_left}, r, t + i, end - i);
      taken.wide += part.wide;
      taken.narrow += part.narrow;
    }
    i = end;
  }
  const BandTaken part = scalar::keep_band(d + i, {wide.threshold, wide.wanted - taken.wide},
                                           {narrow.threshold, narrow.wanted - taken.narrow}, r, t + i, n - i);
  return {taken.wide + part.wide, taken.narrow + part.narrow};
}

size_t GatherBins(const float* HWY_RESTRICT d, size_t n, int32_t first_bin, uint32_t bins, int32_t* HWY_RESTRICT out,
                  uint64_t* HWY_RESTRICT above) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::RebindToUnsigned<decltype(df)> du;
  const size_t lanes = hn::Lanes(df);
  constexpr size_t kRound = size_t{1} << 20;  // vectors per round: each lane's count stays below 2^31
  const auto vfirst = hn::Set(di, first_bin);
  const auto vlast = hn::Set(di, static_cast<int32_t>(first_bin + static_cast<int64_t>(bins) - 1));
  const auto vbins = hn::Set(du, bins);
  size_t i = 0, count = 0;
  while (i + lanes <= n) {
    auto higher = hn::Zero(di);  // minus the count per lane (a true mask is -1)
    for (size_t v = 0; v < kRound && i + lanes <= n; ++v, i += lanes) {
      const auto bits = MagnitudeBits(df, hn::LoadU(df, d + i));
      const auto bin = hn::ShiftRight<16>(bits);
      const auto in = hn::RebindMask(di, hn::Lt(hn::BitCast(du, hn::Sub(bin, vfirst)), vbins));
      higher = hn::Add(higher, hn::VecFromMask(di, hn::Gt(bin, vlast)));
      // Compressed in a register and stored whole: the memory form of the
      // compress is microcoded on AMD cores. The store stays inside
      // out[0, i + lanes), since count <= i.
      hn::StoreU(hn::Compress(bits, in), di, out + count);
      count += hn::CountTrue(di, in);
    }
    *above += static_cast<uint64_t>(-static_cast<int64_t>(hn::GetLane(hn::SumOfLanes(di, higher))));
  }
  return count + scalar::gather_bins(d + i, n - i, first_bin, bins, out + count, above);
}

void CountAtMost(const float* HWY_RESTRICT d, size_t n, const int32_t* HWY_RESTRICT at_most, size_t thresholds,
                 uint64_t* HWY_RESTRICT counts) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const size_t lanes = hn::Lanes(df);
  constexpr size_t kRound = size_t{1} << 20;  // vectors per round: each lane's count stays below 2^31
  const size_t whole = n - n % lanes;  // the elements in whole vectors
  for (size_t t = 0; t < thresholds; ++t) {
    const auto limit = hn::Set(di, at_most[t]);
    for (size_t i = 0; i < whole;) {
      auto below = hn::Zero(di);  // minus the count per lane (a true mask is -1)
      for (size_t v = 0; v < kRound && i < whole; ++v, i += lanes) {
        const auto bits = MagnitudeBits(df, hn::LoadU(df, d + i));
        below = hn::Add(below, hn::VecFromMask(di, hn::Not(hn::Gt(bits, limit))));
      }
      counts[t] += static_cast<uint64_t>(-static_cast<int64_t>(hn::GetLane(hn::SumOfLanes(di, below))));
    }
  }
  scalar::count_at_most(d + whole, n - whole, at_most, thresholds, counts);
}

uint64_t CountNonfinite(const float* HWY_RESTRICT values, size_t n) {
  const hn::ScalableTag<float> df;
  const hn::RebindToUnsigned<decltype(df)> du;
  const size_t lanes = hn::Lanes(df);
  const auto exponent = hn::Set(du, 0x7F800000u);
  uint64_t count = 0;
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    const auto bits = hn::BitCast(du, hn::LoadU(df, values + i));
    count += hn::CountTrue(du, hn::Eq(hn::And(bits, exponent), exponent));
  }
  return count + scalar::count_nonfinite(values + i, n - i);
}

uint64_t CountNonfinite16(const uint16_t* HWY_RESTRICT bits, uint16_t exponent, size_t n) {
  const hn::ScalableTag<uint16_t> du;
  const size_t lanes = hn::Lanes(du);
  const auto mask = hn::Set(du, exponent);
  uint64_t count = 0;
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) count += hn::CountTrue(du, hn::Eq(hn::And(hn::LoadU(du, bits + i), mask), mask));
  return count + scalar::count_nonfinite16(bits + i, exponent, n - i);
}

// draw(j) < limit for the 64-bit lanes holding j = first, first + 1, ...
template <class D64>
auto DrawsBelow(D64 d64, hn::Vec<D64> state, hn::Vec<D64> limit) {
  const hn::RebindToSigned<D64> di64;
  auto z = state;
  z = hn::Mul(hn::Xor(z, hn::ShiftRight<30>(z)), hn::Set(d64, 0xBF58476D1CE4E5B9ull));
  z = hn::Mul(hn::Xor(z, hn::ShiftRight<27>(z)), hn::Set(d64, 0x94D049BB133111EBull));
  const auto draw = hn::ShiftRight<11>(hn::Xor(z, hn::ShiftRight<31>(z)));
  // Draws and limits are below 2^54, so a signed comparison is exact.
  return hn::VecFromMask(d64, hn::RebindMask(d64, hn::Lt(hn::BitCast(di64, draw), hn::BitCast(di64, limit))));
}

void KeepDrawn(uint64_t key, uint64_t first, uint64_t limit, const float* HWY_RESTRICT d, float r,
               float* HWY_RESTRICT t, size_t n) {
#if HWY_TARGET == HWY_SCALAR  // one lane: no pair of 64-bit lanes per float vector
  scalar::keep_drawn(key, first, limit, d, r, t, n);
#else
  const hn::ScalableTag<float> df;
  const hn::RebindToUnsigned<decltype(df)> du32;
  const hn::Repartition<uint64_t, decltype(df)> du64;
  const size_t lanes = hn::Lanes(df);  // twice the 64-bit lanes
  const size_t half = hn::Lanes(du64);
  const uint64_t golden = 0x9E3779B97F4A7C15ull;
  const auto vlimit = hn::Set(du64, limit);
  const auto step = hn::Set(du64, half * golden);
  const auto vr = hn::Set(df, r);
  auto low = hn::Add(hn::Set(du64, key), hn::Mul(hn::Iota(du64, first + 1), hn::Set(du64, golden)));
  auto high = hn::Add(low, step);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    // Each 64-bit mask lane is all ones or zeros: its even 32-bit half says it.
    const auto keep32 = hn::ConcatEven(du32, hn::BitCast(du32, DrawsBelow(du64, high, vlimit)),
                                       hn::BitCast(du32, DrawsBelow(du64, low, vlimit)));
    const auto x = hn::LoadU(df, d + i);
    hn::StoreU(hn::IfThenElseZero(hn::MaskFromVec(hn::BitCast(df, keep32)), hn::Mul(x, vr)), df, t + i);
    low = hn::Add(high, step);
    high = hn::Add(low, step);
  }
  scalar::keep_drawn(key, first + i, limit, d + i, r, t + i, n - i);
#endif
}

void ElectSum(const float* const* HWY_RESTRICT t, const float* HWY_RESTRICT w, size_t count, bool vote_weighted,
              bool normalize, float* HWY_RESTRICT out, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  const auto zero = hn::Zero(df), one = hn::Set(df, 1.0f);
  size_t i = 0;
  if (count == 1 && w[0] == 1.0f) {
    // One vector of weight 1 (TIES' usual case): u = x = t, and t agrees with
    // itself unless it is zero or NaN; m / q is t / 1 then, else 0 / 1.
    for (; i + lanes <= n; i += lanes) {
      const auto t0 = hn::LoadU(df, t[0] + i);
      hn::StoreU(hn::IfThenElseZero(hn::Or(hn::Gt(t0, zero), hn::Lt(t0, zero)), t0), df, out + i);
    }
  }
  for (; i + lanes <= n; i += lanes) {
    auto s = zero;
    for (size_t k = 0; k < count; ++k) {
      const auto tk = hn::LoadU(df, t[k] + i);
      const auto xk = vote_weighted ? hn::Mul(hn::Set(df, w[k]), tk) : tk;
      s = k == 0 ? xk : hn::Add(s, xk);
    }
    const auto positive = hn::Ge(s, zero);
    auto m = zero, q = zero;
    for (size_t k = 0; k < count; ++k) {
      const auto tk = hn::LoadU(df, t[k] + i);
      const auto wk = hn::Set(df, w[k]);
      const auto uk = hn::Mul(wk, tk);
      const auto xk = vote_weighted ? uk : tk;
      const auto agrees = hn::Or(hn::And(positive, hn::Gt(xk, zero)), hn::AndNot(positive, hn::Lt(xk, zero)));
      m = hn::Add(m, hn::IfThenElseZero(agrees, uk));
      q = hn::Add(q, hn::IfThenElseZero(agrees, wk));
    }
    hn::StoreU(normalize ? hn::Div(m, hn::IfThenElse(hn::Eq(q, zero), one, q)) : m, df, out + i);
  }
  scalar::elect_sum_from(t, w, count, vote_weighted, normalize, out, i, n);
}

// Two half-width f32 chunks per step, each with its own f64 accumulators, so
// that the multiply-adds of neighbouring chunks do not wait on each other.
void Bf16DifferenceWithSums(const uint16_t* HWY_RESTRICT post, const uint16_t* HWY_RESTRICT pre,
                            float* HWY_RESTRICT out, size_t n, DeltaSums& sums) {
  const hn::ScalableTag<double> dd;
  const hn::Rebind<float, decltype(dd)> df;  // half-width f32 vectors, widened to f64
  const size_t lanes = hn::Lanes(dd);
  auto base_sq0 = hn::Zero(dd), base_sq1 = hn::Zero(dd), a_sq0 = hn::Zero(dd), a_sq1 = hn::Zero(dd);
  const auto step = [&](size_t i, auto& base_sq, auto& a_sq) {
    const auto a = LoadBf16(df, post + i), p = LoadBf16(df, pre + i);
    hn::StoreU(hn::Sub(a, p), df, out + i);
    const auto pd = hn::PromoteTo(dd, p), da = hn::Sub(hn::PromoteTo(dd, a), pd);
    base_sq = hn::MulAdd(pd, pd, base_sq);
    a_sq = hn::MulAdd(da, da, a_sq);
  };
  size_t i = 0;
  for (; i + 2 * lanes <= n; i += 2 * lanes) {
    step(i, base_sq0, a_sq0);
    step(i + lanes, base_sq1, a_sq1);
  }
  for (; i + lanes <= n; i += lanes) step(i, base_sq0, a_sq0);
  sums.base_sq += hn::GetLane(hn::SumOfLanes(dd, hn::Add(base_sq0, base_sq1)));
  sums.a_sq += hn::GetLane(hn::SumOfLanes(dd, hn::Add(a_sq0, a_sq1)));
  scalar::bf16_difference_with_sums(post + i, pre + i, out + i, n - i, sums);
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
HWY_EXPORT(Bf16Difference);
HWY_EXPORT(AddScaled);
HWY_EXPORT(AccumulateDeltaSums);
HWY_EXPORT(Bf16DifferenceWithSums);
HWY_EXPORT(Add);
HWY_EXPORT(Scale);
HWY_EXPORT(KeepTop);
HWY_EXPORT(KeepBand);
HWY_EXPORT(KeepDrawn);
HWY_EXPORT(GatherBins);
HWY_EXPORT(CountAtMost);
HWY_EXPORT(CountNonfinite);
HWY_EXPORT(CountNonfinite16);
HWY_EXPORT(ElectSum);

void accumulate_delta_sums(const float* pre, const float* a, const float* b, size_t n, DeltaSums& sums) {
  HWY_DYNAMIC_DISPATCH(AccumulateDeltaSums)(pre, a, b, n, sums);
}
void bf16_difference_with_sums(const uint16_t* post, const uint16_t* pre, float* out, size_t n, DeltaSums& sums) {
  HWY_DYNAMIC_DISPATCH(Bf16DifferenceWithSums)(post, pre, out, n, sums);
}

void bf16_to_f32(const uint16_t* in, float* out, size_t n) { HWY_DYNAMIC_DISPATCH(Bf16ToF32)(in, out, n); }
void f32_to_bf16(const float* in, uint16_t* out, size_t n) { HWY_DYNAMIC_DISPATCH(F32ToBf16)(in, out, n); }
void subtract(const float* a, const float* b, float* out, size_t n) {
  HWY_DYNAMIC_DISPATCH(Subtract)(a, b, out, n);
}
void bf16_difference(const uint16_t* a, const uint16_t* b, float* out, size_t n) {
  HWY_DYNAMIC_DISPATCH(Bf16Difference)(a, b, out, n);
}
void add_scaled(const float* t, float w, const float* d, float* out, size_t n) {
  HWY_DYNAMIC_DISPATCH(AddScaled)(t, w, d, out, n);
}
void add(const float* a, const float* b, float* out, size_t n) { HWY_DYNAMIC_DISPATCH(Add)(a, b, out, n); }
void scale(float w, const float* a, float* out, size_t n) { HWY_DYNAMIC_DISPATCH(Scale)(w, a, out, n); }
uint64_t keep_top(const float* d, int32_t above, uint64_t wanted, float r, float* t, size_t n) {
  return HWY_DYNAMIC_DISPATCH(KeepTop)(d, above, wanted, r, t, n);
}
BandTaken keep_band(const float* d, TopLimit wide, TopLimit narrow, float r, float* t, size_t n) {
  return HWY_DYNAMIC_DISPATCH(KeepBand)(d, wide, narrow, r, t, n);
}
size_t gather_bins(const float* d, size_t n, int32_t first_bin, uint32_t bins, int32_t* out, uint64_t* above) {
  return HWY_DYNAMIC_DISPATCH(GatherBins)(d, n, first_bin, bins, out, above);
}
void count_at_most(const float* d, size_t n, const int32_t* at_most, size_t thresholds, uint64_t* counts) {
  HWY_DYNAMIC_DISPATCH(CountAtMost)(d, n, at_most, thresholds, counts);
}
uint64_t count_nonfinite(const float* values, size_t n) { return HWY_DYNAMIC_DISPATCH(CountNonfinite)(values, n); }
uint64_t count_nonfinite16(const uint16_t* bits, uint16_t exponent, size_t n) {
  return HWY_DYNAMIC_DISPATCH(CountNonfinite16)(bits, exponent, n);
}
void keep_drawn(uint64_t key, uint64_t first, uint64_t limit, const float* d, float r, float* t, size_t n) {
  HWY_DYNAMIC_DISPATCH(KeepDrawn)(key, first, limit, d, r, t, n);
}
void elect_sum(const float* const* t, const float* w, size_t count, bool vote_weighted, bool normalize, float* out,
               size_t n) {
  HWY_DYNAMIC_DISPATCH(ElectSum)(t, w, count, vote_weighted, normalize, out, n);
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
void bf16_difference(const uint16_t* a, const uint16_t* b, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = rvec::bf16_to_f32(a[i]) - rvec::bf16_to_f32(b[i]);
}
void bf16_difference_with_sums(const uint16_t* post, const uint16_t* pre, float* out, size_t n, DeltaSums& sums) {
  for (size_t i = 0; i < n; ++i) {
    const float a = rvec::bf16_to_f32(post[i]), p = rvec::bf16_to_f32(pre[i]);
    out[i] = a - p;
    const double da = static_cast<double>(a) - p;
    sums.base_sq += static_cast<double>(p) * p;
    sums.a_sq += da * da;
  }
}
void add_scaled(const float* t, float w, const float* d, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const float product = w * d[i];
    out[i] = t[i] + product;
  }
}
void add(const float* a, const float* b, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}
void scale(float w, const float* a, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = w * a[i];
}

static int32_t magnitude_bits(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  return static_cast<int32_t>(bits & 0x7FFFFFFFu);
}
uint64_t keep_top(const float* d, int32_t above, uint64_t wanted, float r, float* t, size_t n) {
  uint64_t taken = 0;
  for (size_t i = 0; i < n; ++i) {
    const int32_t bits = magnitude_bits(d[i]);
    const bool keep = bits > above || (bits == above && taken < wanted);
    taken += bits == above && keep;
    t[i] = keep ? d[i] * r : 0.0f;
  }
  return taken;
}
void count_at_most(const float* d, size_t n, const int32_t* at_most, size_t thresholds, uint64_t* counts) {
  for (size_t t = 0; t < thresholds; ++t) {
    for (size_t i = 0; i < n; ++i) counts[t] += magnitude_bits(d[i]) <= at_most[t];
  }
}
uint64_t count_nonfinite(const float* values, size_t n) {
  uint64_t count = 0;
  for (size_t i = 0; i < n; ++i) count += (std::bit_cast<uint32_t>(values[i]) & 0x7F800000u) == 0x7F800000u;
  return count;
}
uint64_t count_nonfinite16(const uint16_t* bits, uint16_t exponent, size_t n) {
  uint64_t count = 0;
  for (size_t i = 0; i < n; ++i) count += (bits[i] & exponent) == exponent;
  return count;
}
size_t gather_bins(const float* d, size_t n, int32_t first_bin, uint32_t bins, int32_t* out, uint64_t* above) {
  size_t count = 0;
  for (size_t i = 0; i < n; ++i) {
    const int32_t bits = magnitude_bits(d[i]);
    const int64_t offset = (bits >> 16) - int64_t{first_bin};
    if (offset >= 0 && offset < bins) out[count++] = bits;
    *above += offset >= int64_t{bins};
  }
  return count;
}
BandTaken keep_band(const float* d, TopLimit wide, TopLimit narrow, float r, float* t, size_t n) {
  BandTaken taken;
  for (size_t i = 0; i < n; ++i) {
    const int32_t bits = magnitude_bits(d[i]);
    const bool in_wide = bits > wide.threshold || (bits == wide.threshold && taken.wide < wide.wanted);
    const bool in_narrow = bits > narrow.threshold || (bits == narrow.threshold && taken.narrow < narrow.wanted);
    taken.wide += bits == wide.threshold && in_wide;
    taken.narrow += bits == narrow.threshold && in_narrow;
    t[i] = in_wide && !in_narrow ? d[i] * r : 0.0f;
  }
  return taken;
}
void keep_drawn(uint64_t key, uint64_t first, uint64_t limit, const float* d, float r, float* t, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    uint64_t z = key + (first + i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    t[i] = ((z ^ (z >> 31)) >> 11) < limit ? d[i] * r : 0.0f;
  }
}
void elect_sum(const float* const* t, const float* w, size_t count, bool vote_weighted, bool normalize, float* out,
               size_t n) {
  elect_sum_from(t, w, count, vote_weighted, normalize, out, 0, n);
}
void elect_sum_from(const float* const* t, const float* w, size_t count, bool vote_weighted, bool normalize,
                    float* out, size_t first, size_t n) {
  for (size_t i = first; i < n; ++i) {
    float s = 0;
    for (size_t k = 0; k < count; ++k) {
      const float x = vote_weighted ? w[k] * t[k][i] : t[k][i];
      s = k == 0 ? x : s + x;
    }
    float m = 0, q = 0;
    for (size_t k = 0; k < count; ++k) {
      const float u = w[k] * t[k][i];
      const float x = vote_weighted ? u : t[k][i];
      const bool agrees = s >= 0 ? x > 0 : x < 0;
      m += agrees ? u : 0.0f;
      q += agrees ? w[k] : 0.0f;
    }
    out[i] = normalize ? m / (q == 0 ? 1.0f : q) : m;
  }
}

}  // namespace scalar
}  // namespace rvec::kernels
#endif  // HWY_ONCE
