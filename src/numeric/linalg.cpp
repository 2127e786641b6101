#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "numeric/linalg.cpp"
#include <hwy/foreach_target.h>  // must come before highway.h
#include <hwy/highway.h>

#include <algorithm>
#include <type_traits>
#include <vector>

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

// ---- gemm: register tiles for many activation rows --------------------------
//
// A tile multiplies R weight rows into T activation rows, holding R·T vector
// accumulators in registers: each weight vector loaded (and widened) is used T
// times, each activation vector R times. Columns go in blocks of 2L (L = f32
// lanes). A block of 2L bf16 weights is widened as ReorderWidenMulAccumulate
// widens it: shifting each 32-bit pair left by 16 gives the even-indexed
// weights as f32, masking the low half gives the odd-indexed ones: 2 ALU
// operations per 2L weights, the fewest that keep the activations in f32.
// The activations of a tile of tokens are packed once into the same order
// (per block: the L even-indexed values, then the L odd-indexed ones), so each
// product pairs the right values. f32 weights need no widening and are read
// with the activations unpacked.

// Columns per pass: a token tile's packed columns (T · 4 KiB) stay in L1
// while every row tile of the task streams past them.
constexpr size_t kGemmChunk = 1024;
constexpr size_t kRowTile = 4, kTokenTile = 4;

HWY_INLINE void LoadBlock(const DF df, const uint16_t* HWY_RESTRICT w, hn::Vec<DF>& even, hn::Vec<DF>& odd) {
  const hn::RebindToUnsigned<DF> du32;
  const auto pairs = hn::LoadU(du32, reinterpret_cast<const uint32_t*>(w));
  even = hn::BitCast(df, hn::ShiftLeft<16>(pairs));
  odd = hn::BitCast(df, hn::And(pairs, hn::Set(du32, 0xFFFF0000u)));
}
HWY_INLINE void LoadBlock(const DF df, const float* HWY_RESTRICT w, hn::Vec<DF>& first, hn::Vec<DF>& second) {
  first = hn::LoadU(df, w);
  second = hn::LoadU(df, w + hn::Lanes(df));
}

// x[t, 0:len] for `tokens` rows (stride x_stride) in the order LoadBlock
// widens bf16 weights; len is a multiple of 2L.
void PackActivations(const float* HWY_RESTRICT x, size_t x_stride, size_t tokens, size_t len, float* HWY_RESTRICT out) {
  const size_t lanes = hn::Lanes(DF());
  for (size_t t = 0; t < tokens; ++t) {
    const float* row = x + t * x_stride;
    for (size_t k = 0; k < len; k += 2 * lanes) {
      for (size_t j = 0; j < lanes; ++j) {
        out[k + j] = row[k + 2 * j];
        out[k + lanes + j] = row[k + 2 * j + 1];
      }
    }
    out += len;
  }
}

// y[t, r] (+)= w[r, 0:len] · x[t, 0:len] for r < R, t < T.
template <size_t R, size_t T, typename W>
HWY_INLINE void GemmTile(const W* HWY_RESTRICT w, size_t w_stride, const float* HWY_RESTRICT x, size_t x_stride,
                         size_t len, float* HWY_RESTRICT y, size_t y_stride, bool accumulate) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  hn::Vec<DF> acc[R][T];
  for (size_t r = 0; r < R; ++r) {
    for (size_t t = 0; t < T; ++t) acc[r][t] = hn::Zero(df);
  }
  for (size_t k = 0; k < len; k += 2 * lanes) {
    hn::Vec<DF> first[R], second[R];
    for (size_t r = 0; r < R; ++r) LoadBlock(df, w + r * w_stride + k, first[r], second[r]);
    for (size_t t = 0; t < T; ++t) {
      const auto xv = hn::LoadU(df, x + t * x_stride + k);
      for (size_t r = 0; r < R; ++r) acc[r][t] = hn::MulAdd(first[r], xv, acc[r][t]);
    }
    for (size_t t = 0; t < T; ++t) {
      const auto xv = hn::LoadU(df, x + t * x_stride + k + lanes);
      for (size_t r = 0; r < R; ++r) acc[r][t] = hn::MulAdd(second[r], xv, acc[r][t]);
    }
  }
  for (size_t t = 0; t < T; ++t) {
    for (size_t r = 0; r < R; ++r) {
      const float sum = hn::GetLane(hn::SumOfLanes(df, acc[r][t]));
      y[t * y_stride + r] = accumulate ? y[t * y_stride + r] + sum : sum;
    }
  }
}

// Every row of the weights against a tile of `tokens` (< kTokenTile + 1) activation rows.
template <size_t T, typename W>
void GemmTokenTile(const W* HWY_RESTRICT w, size_t rows, size_t w_stride, const float* HWY_RESTRICT x,
                   size_t x_stride, size_t len, float* HWY_RESTRICT y, size_t y_stride, bool accumulate) {
  size_t r = 0;
  for (; r + kRowTile <= rows; r += kRowTile) {
    GemmTile<kRowTile, T>(w + r * w_stride, w_stride, x, x_stride, len, y + r, y_stride, accumulate);
  }
  for (; r < rows; ++r) GemmTile<1, T>(w + r * w_stride, w_stride, x, x_stride, len, y + r, y_stride, accumulate);
}

template <typename W>
void GemmTokens(size_t tokens, const W* HWY_RESTRICT w, size_t rows, size_t w_stride, const float* HWY_RESTRICT x,
                size_t x_stride, size_t len, float* HWY_RESTRICT y, size_t y_stride, bool accumulate) {
  static_assert(kTokenTile == 4);
  switch (tokens) {
    case 4: GemmTokenTile<4>(w, rows, w_stride, x, x_stride, len, y, y_stride, accumulate); break;
    case 3: GemmTokenTile<3>(w, rows, w_stride, x, x_stride, len, y, y_stride, accumulate); break;
    case 2: GemmTokenTile<2>(w, rows, w_stride, x, x_stride, len, y, y_stride, accumulate); break;
    case 1: GemmTokenTile<1>(w, rows, w_stride, x, x_stride, len, y, y_stride, accumulate); break;
    default: break;
  }
}

// The columns past the last whole block of 2L, added one product at a time.
template <typename W>
void GemmTail(const W* HWY_RESTRICT w, size_t rows, size_t cols, size_t body, const float* HWY_RESTRICT x,
              size_t batch, float* HWY_RESTRICT y, size_t y_stride) {
  for (size_t t = 0; t < batch; ++t) {
    for (size_t r = 0; r < rows; ++r) {
      float sum = body > 0 ? y[t * y_stride + r] : 0.0f;
      for (size_t i = body; i < cols; ++i) sum += ToF32(w[r * cols + i]) * x[t * cols + i];
      y[t * y_stride + r] = sum;
    }
  }
}

template <typename W>
void Gemm(const W* HWY_RESTRICT w, size_t rows, size_t cols, const float* HWY_RESTRICT x, size_t batch,
          float* HWY_RESTRICT y, size_t y_stride) {
  constexpr bool kPack = std::is_same_v<W, uint16_t>;
  const size_t block = 2 * hn::Lanes(DF());
  const size_t body = cols - cols % block;
  thread_local std::vector<float> packed;
  for (size_t k0 = 0; k0 < body; k0 += kGemmChunk) {
    const size_t len = std::min(kGemmChunk, body - k0);
    for (size_t t0 = 0; t0 < batch; t0 += kTokenTile) {
      const size_t tokens = std::min(kTokenTile, batch - t0);
      const float* xt = x + t0 * cols + k0;
      size_t x_stride = cols;
      if constexpr (kPack) {
        packed.resize(kTokenTile * kGemmChunk);
        PackActivations(xt, cols, tokens, len, packed.data());
        xt = packed.data();
        x_stride = len;
      }
      GemmTokens(tokens, w + k0, rows, cols, xt, x_stride, len, y + t0 * y_stride, y_stride, k0 > 0);
    }
  }
  if (body < cols) GemmTail(w, rows, cols, body, x, batch, y, y_stride);
}

void GemmBf16(const uint16_t* HWY_RESTRICT w, size_t rows, size_t cols, const float* HWY_RESTRICT x, size_t batch,
              float* HWY_RESTRICT y, size_t y_stride) {
  Gemm(w, rows, cols, x, batch, y, y_stride);
}

void GemmF32(const float* HWY_RESTRICT w, size_t rows, size_t cols, const float* HWY_RESTRICT x, size_t batch,
             float* HWY_RESTRICT y, size_t y_stride) {
  Gemm(w, rows, cols, x, batch, y, y_stride);
}

}  // namespace rvec::linalg::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace rvec::linalg {

HWY_EXPORT(Dot);
HWY_EXPORT(Axpy);
HWY_EXPORT(GemvBf16);
HWY_EXPORT(GemvF32);
HWY_EXPORT(GemmBf16);
HWY_EXPORT(GemmF32);

float dot(const float* a, const float* b, size_t n) { return HWY_DYNAMIC_DISPATCH(Dot)(a, b, n); }
void axpy(float alpha, const float* x, float* y, size_t n) { HWY_DYNAMIC_DISPATCH(Axpy)(alpha, x, y, n); }
void gemv_bf16(const uint16_t* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride) {
  HWY_DYNAMIC_DISPATCH(GemvBf16)(w, rows, cols, x, batch, y, y_stride);
}
void gemv_f32(const float* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride) {
  HWY_DYNAMIC_DISPATCH(GemvF32)(w, rows, cols, x, batch, y, y_stride);
}

void gemm_bf16(const uint16_t* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride) {
  HWY_DYNAMIC_DISPATCH(GemmBf16)(w, rows, cols, x, batch, y, y_stride);
}
void gemm_f32(const float* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride) {
  HWY_DYNAMIC_DISPATCH(GemmF32)(w, rows, cols, x, batch, y, y_stride);
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
void gemm_bf16(const uint16_t* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride) {
  gemv(w, rows, cols, x, batch, y, y_stride);
}
void gemm_f32(const float* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride) {
  gemv(w, rows, cols, x, batch, y, y_stride);
}

}  // namespace scalar
}  // namespace rvec::linalg
#endif
