#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "numeric/linalg.cpp"
#include <hwy/foreach_target.h>  // must come before highway.h
#include <hwy/highway.h>

#include "numeric/convert.hpp"
#include "numeric/linalg.hpp"

HWY_BEFORE_NAMESPACE();
namespace rvec::linalg::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;

HWY_INLINE float ToF32(uint16_t bf16) { return bf16_to_f32(bf16); }
HWY_INLINE float ToF32(float f) { return f; }

float Dot(const float* HWY_RESTRICT a, const float* HWY_RESTRICT b, size_t n) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  auto acc0 = hn::Zero(df), acc1 = hn::Zero(df);
  size_t i = 0;
  for (; i + 2 * lanes <= n; i += 2 * lanes) {
    acc0 = hn::MulAdd(hn::LoadU(df, a + i), hn::LoadU(df, b + i), acc0);
    acc1 = hn::MulAdd(hn::LoadU(df, a + i + lanes), hn::LoadU(df, b + i + lanes), acc1);
  }
  for (; i + lanes <= n; i += lanes) acc0 = hn::MulAdd(hn::LoadU(df, a + i), hn::LoadU(df, b + i), acc0);
  return hn::GetLane(hn::SumOfLanes(df, hn::Add(acc0, acc1))) + scalar::dot(a + i, b + i, n - i);
}

void Axpy(float alpha, const float* HWY_RESTRICT x, float* HWY_RESTRICT y, size_t n) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  const auto va = hn::Set(df, alpha);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) hn::StoreU(hn::MulAdd(va, hn::LoadU(df, x + i), hn::LoadU(df, y + i)), df, y + i);
  scalar::axpy(alpha, x + i, y + i, n - i);
}

HWY_INLINE hn::Vec<DF> LoadWeights(const DF df, const uint16_t* HWY_RESTRICT w) {
  const hn::RebindToUnsigned<DF> du32;
  const hn::Rebind<uint16_t, DF> du16;
  return hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(du32, hn::LoadU(du16, w))));
}
HWY_INLINE hn::Vec<DF> LoadWeights(const DF df, const float* HWY_RESTRICT w) { return hn::LoadU(df, w); }

// G activation rows against one weight row, U independent accumulators per
// row so the FMA latency is hidden even when G is small: G * U = 4.
template <size_t G, typename W>
void GemvGroup(const W* HWY_RESTRICT w, size_t cols, const float* HWY_RESTRICT x, float* HWY_RESTRICT y,
               size_t y_stride) {
  constexpr size_t U = 4 / G;
  const DF df;
  const size_t lanes = hn::Lanes(df);
  const size_t body = cols - cols % (lanes * U);
  hn::Vec<DF> acc[G][U];
  for (size_t g = 0; g < G; ++g) {
    for (size_t u = 0; u < U; ++u) acc[g][u] = hn::Zero(df);
  }
  for (size_t i = 0; i < body; i += lanes * U) {
    for (size_t u = 0; u < U; ++u) {
      const auto wv = LoadWeights(df, w + i + u * lanes);
      for (size_t g = 0; g < G; ++g) acc[g][u] = hn::MulAdd(wv, hn::LoadU(df, x + g * cols + i + u * lanes), acc[g][u]);
    }
  }
  for (size_t g = 0; g < G; ++g) {
    auto sum = acc[g][0];
    for (size_t u = 1; u < U; ++u) sum = hn::Add(sum, acc[g][u]);
    float tail = 0;
    for (size_t i = body; i < cols; ++i) tail += ToF32(w[i]) * x[g * cols + i];
    y[g * y_stride] = hn::GetLane(hn::SumOfLanes(df, sum)) + tail;
  }
}

// One weight row against every activation row, four at a time: the row is
// loaded (and widened from bf16) once per group and stays in L1 between
// groups, so DRAM sees each weight once per step.
template <typename W>
void GemvRow(const W* HWY_RESTRICT w, size_t cols, const float* HWY_RESTRICT x, size_t batch, float* HWY_RESTRICT y,
             size_t y_stride) {
  size_t b = 0;
  for (; b + 4 <= batch; b += 4) GemvGroup<4>(w, cols, x + b * cols, y + b * y_stride, y_stride);
  switch (batch - b) {
    case 3: GemvGroup<3>(w, cols, x + b * cols, y + b * y_stride, y_stride); break;
    case 2: GemvGroup<2>(w, cols, x + b * cols, y + b * y_stride, y_stride); break;
    case 1: GemvGroup<1>(w, cols, x + b * cols, y + b * y_stride, y_stride); break;
    default: break;
  }
}

void GemvBf16(const uint16_t* HWY_RESTRICT w, size_t rows, size_t cols, const float* HWY_RESTRICT x, size_t batch,
              float* HWY_RESTRICT y, size_t y_stride) {
  for (size_t r = 0; r < rows; ++r) GemvRow(w + r * cols, cols, x, batch, y + r, y_stride);
}

void GemvF32(const float* HWY_RESTRICT w, size_t rows, size_t cols, const float* HWY_RESTRICT x, size_t batch,
             float* HWY_RESTRICT y, size_t y_stride) {
  for (size_t r = 0; r < rows; ++r) GemvRow(w + r * cols, cols, x, batch, y + r, y_stride);
}

}  // namespace rvec::linalg::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace rvec::linalg {

HWY_EXPORT(Dot);
HWY_EXPORT(Axpy);
HWY_EXPORT(GemvBf16);
HWY_EXPORT(GemvF32);

float dot(const float* a, const float* b, size_t n) { return HWY_DYNAMIC_DISPATCH(Dot)(a, b, n); }
void axpy(float alpha, const float* x, float* y, size_t n) { HWY_DYNAMIC_DISPATCH(Axpy)(alpha, x, y, n); }
void gemv_bf16(const uint16_t* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride) {
  HWY_DYNAMIC_DISPATCH(GemvBf16)(w, rows, cols, x, batch, y, y_stride);
}
void gemv_f32(const float* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride) {
  HWY_DYNAMIC_DISPATCH(GemvF32)(w, rows, cols, x, batch, y, y_stride);
}

namespace scalar {

inline float to_f32(uint16_t bf16) { return bf16_to_f32(bf16); }
inline float to_f32(float f) { return f; }

float dot(const float* a, const float* b, size_t n) {
  float sum = 0;
  for (size_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

void axpy(float alpha, const float* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

template <typename W>
void gemv(const W* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride) {
  for (size_t r = 0; r < rows; ++r) {
    for (size_t b = 0; b < batch; ++b) {
      float sum = 0;
      for (size_t i = 0; i < cols; ++i) sum += to_f32(w[r * cols + i]) * x[b * cols + i];
      y[b * y_stride + r] = sum;
    }
  }
}

void gemv_bf16(const uint16_t* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride) {
  gemv(w, rows, cols, x, batch, y, y_stride);
}
void gemv_f32(const float* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride) {
  gemv(w, rows, cols, x, batch, y, y_stride);
}

}  // namespace scalar
}  // namespace rvec::linalg
#endif
