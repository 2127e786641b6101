#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "numeric/linalg.cpp"
#include <hwy/foreach_target.h>  // must come before highway.h
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>
#include <hwy/cache_control.h>

#include <algorithm>
#include <cmath>
#include <cstring>
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

// How far ahead of the row being multiplied the gemv kernels prefetch the
// weights. The hardware's L2 streamer stops at every 4 KiB page boundary, so
// without this one core's gemv over a weight stream reached about 70 % of the
// bandwidth of a plain read of the same bytes; 8 KiB ahead it reaches the
// plain read's rate (rvec_kernels_bench gemv_bf16/one_stream_512MiB against
// read/one_stream_512MiB; docs/engine.md "Decode of one stream").
constexpr size_t kGemvPrefetchBytes = 8 << 10;

// Before row r of the `rows` rows of `row_bytes` at w is read: prefetches
// the bytes kGemvPrefetchBytes after its start, within w only. Prefetches
// change no result.
HWY_INLINE void PrefetchAhead(const void* w, size_t r, size_t row_bytes, size_t rows) {
  const auto* bytes = static_cast<const char*>(w);
  const size_t ahead = r * row_bytes + kGemvPrefetchBytes, end = std::min(ahead + row_bytes, rows * row_bytes);
  for (size_t at = ahead; at < end; at += 64) hwy::Prefetch(bytes + at);
}

template <typename W>
void GemvRows(const W* HWY_RESTRICT w, size_t rows, size_t cols, const float* HWY_RESTRICT x, size_t batch,
              float* HWY_RESTRICT y, size_t y_stride) {
  for (size_t r = 0; r < rows; ++r) {
    PrefetchAhead(w, r, cols * sizeof(W), rows);
    GemvRow(w + r * cols, cols, x, batch, y + r, y_stride);
  }
}

void GemvBf16(const uint16_t* HWY_RESTRICT w, size_t rows, size_t cols, const float* HWY_RESTRICT x, size_t batch,
              float* HWY_RESTRICT y, size_t y_stride) {
  GemvRows(w, rows, cols, x, batch, y, y_stride);
}

void GemvF32(const float* HWY_RESTRICT w, size_t rows, size_t cols, const float* HWY_RESTRICT x, size_t batch,
             float* HWY_RESTRICT y, size_t y_stride) {
  GemvRows(w, rows, cols, x, batch, y, y_stride);
}

// ---- Q8_0 rows ---------------------------------------------------------------

constexpr size_t kQ8Block = 32, kQ8BlockBytes = 34;

HWY_INLINE float Q8Scale(const std::byte* HWY_RESTRICT block) {
  uint16_t bits;
  std::memcpy(&bits, block, 2);
  return f16_to_f32(bits);
}

// G activation rows against one Q8_0 row: per block, the int8 values are
// widened to f32 and multiplied into a block sum per activation row, which
// the block's scale then adds to the row's accumulator.
template <size_t G>
void GemvQ8Group(const std::byte* HWY_RESTRICT w, size_t cols, const float* HWY_RESTRICT x, float* HWY_RESTRICT y,
                 size_t y_stride) {
  const hn::CappedTag<float, kQ8Block> df;  // lanes divide the block
  const hn::Rebind<int32_t, decltype(df)> di32;
  const hn::Rebind<int8_t, decltype(df)> di8;
  const size_t lanes = hn::Lanes(df);
  hn::Vec<decltype(df)> acc[G];
  for (size_t g = 0; g < G; ++g) acc[g] = hn::Zero(df);
  for (size_t b = 0; b < cols / kQ8Block; ++b) {
    const std::byte* block = w + b * kQ8BlockBytes;
    const auto* q = reinterpret_cast<const int8_t*>(block + 2);
    hn::Vec<decltype(df)> part[G];
    for (size_t g = 0; g < G; ++g) part[g] = hn::Zero(df);
    for (size_t i = 0; i < kQ8Block; i += lanes) {
      const auto wv = hn::ConvertTo(df, hn::PromoteTo(di32, hn::LoadU(di8, q + i)));
      for (size_t g = 0; g < G; ++g) part[g] = hn::MulAdd(wv, hn::LoadU(df, x + g * cols + b * kQ8Block + i), part[g]);
    }
    const auto scale = hn::Set(df, Q8Scale(block));
    for (size_t g = 0; g < G; ++g) acc[g] = hn::MulAdd(scale, part[g], acc[g]);
  }
  for (size_t g = 0; g < G; ++g) y[g * y_stride] = hn::GetLane(hn::SumOfLanes(df, acc[g]));
}

void GemvQ8_0(const std::byte* HWY_RESTRICT w, size_t rows, size_t cols, const float* HWY_RESTRICT x, size_t batch,
              float* HWY_RESTRICT y, size_t y_stride) {
  const size_t row_bytes = cols / kQ8Block * kQ8BlockBytes;
  for (size_t r = 0; r < rows; ++r) {
    PrefetchAhead(w, r, row_bytes, rows);
    const std::byte* row = w + r * row_bytes;
    size_t b = 0;
    for (; b + 4 <= batch; b += 4) GemvQ8Group<4>(row, cols, x + b * cols, y + b * y_stride + r, y_stride);
    switch (batch - b) {
      case 3: GemvQ8Group<3>(row, cols, x + b * cols, y + b * y_stride + r, y_stride); break;
      case 2: GemvQ8Group<2>(row, cols, x + b * cols, y + b * y_stride + r, y_stride); break;
      case 1: GemvQ8Group<1>(row, cols, x + b * cols, y + b * y_stride + r, y_stride); break;
      default: break;
    }
  }
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
// product pairs the right values; matmul packs them once for all its tasks.
// f32 weights need no widening and are read with the activations unpacked.

// Columns per pass: a token tile's columns (T · 4 KiB) stay in L1 while
// every row tile of the task streams past them.
constexpr size_t kGemmChunk = 1024;
// 4 x 6 tiles measured fastest on AVX-512 (24 accumulators + 8 widened
// weight vectors + 1 activation vector fit the 32 registers); 4 x 4 was 8 %
// slower, 3 x 8, 2 x 8 and 6 x 4 40 % slower (spills).
constexpr size_t kRowTile = 4, kTokenTile = 6;

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

// x: [batch, cols] in the order LoadBlock widens bf16 weights, block by block;
// the columns past the last whole block stay where they are.
void PackActivations(const float* HWY_RESTRICT x, size_t batch, size_t cols, float* HWY_RESTRICT out) {
  const size_t lanes = hn::Lanes(DF()), body = cols - cols % (2 * lanes);
  for (size_t t = 0; t < batch; ++t) {
    const float* row = x + t * cols;
    float* packed = out + t * cols;
    for (size_t k = 0; k < body; k += 2 * lanes) {
      for (size_t j = 0; j < lanes; ++j) {
        packed[k + j] = row[k + 2 * j];
        packed[k + lanes + j] = row[k + 2 * j + 1];
      }
    }
    std::copy(row + body, row + cols, packed + body);
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

// Dispatches a tile of `tokens` (1 to T) activation rows to its instantiation.
template <size_t T, typename W>
void GemmTokens(size_t tokens, const W* HWY_RESTRICT w, size_t rows, size_t w_stride, const float* HWY_RESTRICT x,
                size_t x_stride, size_t len, float* HWY_RESTRICT y, size_t y_stride, bool accumulate) {
  if (tokens == T) {
    GemmTokenTile<T>(w, rows, w_stride, x, x_stride, len, y, y_stride, accumulate);
  } else if constexpr (T > 1) {
    GemmTokens<T - 1>(tokens, w, rows, w_stride, x, x_stride, len, y, y_stride, accumulate);
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

// x: [batch, cols], packed by PackActivations when the weights are bf16.
template <typename W>
void GemmPacked(const W* HWY_RESTRICT w, size_t rows, size_t cols, const float* HWY_RESTRICT x, size_t batch,
                float* HWY_RESTRICT y, size_t y_stride) {
  const size_t body = cols - cols % (2 * hn::Lanes(DF()));
  for (size_t k0 = 0; k0 < body; k0 += kGemmChunk) {
    const size_t len = std::min(kGemmChunk, body - k0);
    for (size_t t0 = 0; t0 < batch; t0 += kTokenTile) {
      GemmTokens<kTokenTile>(std::min(kTokenTile, batch - t0), w + k0, rows, cols, x + t0 * cols + k0, cols, len,
                             y + t0 * y_stride, y_stride, k0 > 0);
    }
  }
  if (body < cols) GemmTail(w, rows, cols, body, x, batch, y, y_stride);
}

void PackBf16Activations(const float* HWY_RESTRICT x, size_t batch, size_t cols, float* HWY_RESTRICT packed) {
  PackActivations(x, batch, cols, packed);
}

void GemmBf16Packed(const uint16_t* HWY_RESTRICT w, size_t rows, size_t cols, const float* HWY_RESTRICT packed,
                    size_t batch, float* HWY_RESTRICT y, size_t y_stride) {
  GemmPacked(w, rows, cols, packed, batch, y, y_stride);
}

void GemmBf16(const uint16_t* HWY_RESTRICT w, size_t rows, size_t cols, const float* HWY_RESTRICT x, size_t batch,
              float* HWY_RESTRICT y, size_t y_stride) {
  thread_local std::vector<float> packed;
  packed.resize(batch * cols);
  PackActivations(x, batch, cols, packed.data());
  GemmPacked(w, rows, cols, packed.data(), batch, y, y_stride);
}

void GemmF32(const float* HWY_RESTRICT w, size_t rows, size_t cols, const float* HWY_RESTRICT x, size_t batch,
             float* HWY_RESTRICT y, size_t y_stride) {
  GemmPacked(w, rows, cols, x, batch, y, y_stride);
}

// ---- attention: key tiles with an online softmax ---------------------------
//
// Keys are taken kKeyTile at a time and transposed into a [head_dim, kKeyTile]
// buffer, so the scores of one query against a whole tile are a few vector
// accumulators (q[d] broadcast times a row of the buffer), with no horizontal
// sums. Each query keeps its running maximum m and sum l of exp(score - m);
// when a tile raises m, the output row and l are scaled by exp(m_old - m_new)
// before the tile's exp(score - m_new)·v are added. Memory per task is the
// tile, one score row and two floats per query: nothing grows with the square
// of the context.

// 64 keys, or more where 4 vectors hold more (TileScores computes 4 at a time).
constexpr size_t kKeyTile = HWY_MAX(64, 4 * HWY_LANES(float));

// kt[d * kKeyTile + j] = keys[j, d] for j < count, 0 beyond.
void TransposeKeys(const float* HWY_RESTRICT keys, size_t kv_stride, size_t count, size_t head_dim,
                   float* HWY_RESTRICT kt) {
  for (size_t d = 0; d < head_dim; ++d) {
    float* row = kt + d * kKeyTile;
    for (size_t j = 0; j < count; ++j) row[j] = keys[j * kv_stride + d];
    std::fill(row + count, row + kKeyTile, 0.0f);
  }
}

// scores[j] = scale · q · k_j for the first `count` keys of the tile (a
// multiple of 4 vectors is computed; the zero keys past `count` are ignored).
void TileScores(const float* HWY_RESTRICT q, const float* HWY_RESTRICT kt, size_t head_dim, size_t count, float scale,
                float* HWY_RESTRICT scores) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  for (size_t j0 = 0; j0 < count; j0 += 4 * lanes) {
    auto a0 = hn::Zero(df), a1 = hn::Zero(df), a2 = hn::Zero(df), a3 = hn::Zero(df);
    for (size_t d = 0; d < head_dim; ++d) {
      const auto qd = hn::Set(df, q[d]);
      const float* row = kt + d * kKeyTile + j0;
      a0 = hn::MulAdd(qd, hn::LoadU(df, row), a0);
      a1 = hn::MulAdd(qd, hn::LoadU(df, row + lanes), a1);
      a2 = hn::MulAdd(qd, hn::LoadU(df, row + 2 * lanes), a2);
      a3 = hn::MulAdd(qd, hn::LoadU(df, row + 3 * lanes), a3);
    }
    const auto vs = hn::Set(df, scale);
    hn::StoreU(hn::Mul(a0, vs), df, scores + j0);
    hn::StoreU(hn::Mul(a1, vs), df, scores + j0 + lanes);
    hn::StoreU(hn::Mul(a2, vs), df, scores + j0 + 2 * lanes);
    hn::StoreU(hn::Mul(a3, vs), df, scores + j0 + 3 * lanes);
  }
}

// One query's online-softmax step over `count` scores of a tile: updates m, l
// and out (unnormalised) with exp(score - m)·v.
void SoftmaxStep(float* HWY_RESTRICT scores, size_t count, const float* HWY_RESTRICT values, size_t kv_stride,
                 size_t head_dim, float& m, float& l, float* HWY_RESTRICT out) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  float tile_max = m;
  for (size_t j = 0; j < count; ++j) tile_max = std::max(tile_max, scores[j]);
  const float correction = std::exp(m - tile_max);  // exp(-inf) = 0 on the first tile
  m = tile_max;
  const auto vmax = hn::Set(df, tile_max);
  size_t j = 0;
  for (; j + lanes <= count; j += lanes) {
    hn::StoreU(hn::Exp(df, hn::Sub(hn::LoadU(df, scores + j), vmax)), df, scores + j);
  }
  for (; j < count; ++j) scores[j] = std::exp(scores[j] - tile_max);
  float sum = 0;
  for (j = 0; j < count; ++j) sum += scores[j];
  l = l * correction + sum;
  size_t d = 0;
  for (; d + lanes <= head_dim; d += lanes) {
    auto acc = hn::Mul(hn::LoadU(df, out + d), hn::Set(df, correction));
    for (j = 0; j < count; ++j) acc = hn::MulAdd(hn::Set(df, scores[j]), hn::LoadU(df, values + j * kv_stride + d), acc);
    hn::StoreU(acc, df, out + d);
  }
  for (; d < head_dim; ++d) {
    float acc = out[d] * correction;
    for (j = 0; j < count; ++j) acc += scores[j] * values[j * kv_stride + d];
    out[d] = acc;
  }
}

void Attention(const float* HWY_RESTRICT q, size_t q_stride, size_t tokens, size_t heads, size_t position,
               const float* HWY_RESTRICT keys, const float* HWY_RESTRICT values, size_t kv_stride, size_t head_dim,
               float scale, float* HWY_RESTRICT out, size_t out_stride) {
  const size_t queries = tokens * heads, total = position + tokens;
  thread_local std::vector<float> kt, scores, m, l;
  kt.resize(head_dim * kKeyTile);
  scores.resize(kKeyTile);
  m.assign(queries, -INFINITY);
  l.assign(queries, 0.0f);
  for (size_t t = 0; t < tokens; ++t) std::fill_n(out + t * out_stride, heads * head_dim, 0.0f);
  for (size_t j0 = 0; j0 < total; j0 += kKeyTile) {
    const size_t count = std::min(kKeyTile, total - j0);
    TransposeKeys(keys + j0 * kv_stride, kv_stride, count, head_dim, kt.data());
    for (size_t i = 0; i < queries; ++i) {
      const size_t t = i / heads, h = i % heads, visible = position + t + 1;
      if (visible <= j0) continue;
      const size_t seen = std::min(count, visible - j0);
      TileScores(q + t * q_stride + h * head_dim, kt.data(), head_dim, seen, scale, scores.data());
      SoftmaxStep(scores.data(), seen, values + j0 * kv_stride, kv_stride, head_dim, m[i], l[i],
                  out + t * out_stride + h * head_dim);
    }
  }
  for (size_t i = 0; i < queries; ++i) {
    float* row = out + (i / heads) * out_stride + (i % heads) * head_dim;
    for (size_t d = 0; d < head_dim; ++d) row[d] /= l[i];
  }
}

}  // namespace rvec::linalg::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace rvec::linalg {

HWY_EXPORT(Dot);
HWY_EXPORT(Axpy);
HWY_EXPORT(GemvBf16);
HWY_EXPORT(GemvF32);
HWY_EXPORT(GemvQ8_0);
HWY_EXPORT(GemmBf16);
HWY_EXPORT(GemmF32);
HWY_EXPORT(PackBf16Activations);
HWY_EXPORT(GemmBf16Packed);
HWY_EXPORT(Attention);

float dot(const float* a, const float* b, size_t n) { return HWY_DYNAMIC_DISPATCH(Dot)(a, b, n); }
void axpy(float alpha, const float* x, float* y, size_t n) { HWY_DYNAMIC_DISPATCH(Axpy)(alpha, x, y, n); }
void gemv_bf16(const uint16_t* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride) {
  HWY_DYNAMIC_DISPATCH(GemvBf16)(w, rows, cols, x, batch, y, y_stride);
}
void gemv_f32(const float* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride) {
  HWY_DYNAMIC_DISPATCH(GemvF32)(w, rows, cols, x, batch, y, y_stride);
}
void gemv_q8_0(const std::byte* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride) {
  HWY_DYNAMIC_DISPATCH(GemvQ8_0)(w, rows, cols, x, batch, y, y_stride);
}

void gemm_bf16(const uint16_t* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride) {
  HWY_DYNAMIC_DISPATCH(GemmBf16)(w, rows, cols, x, batch, y, y_stride);
}
void gemm_f32(const float* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride) {
  HWY_DYNAMIC_DISPATCH(GemmF32)(w, rows, cols, x, batch, y, y_stride);
}
void pack_bf16_activations(const float* x, size_t batch, size_t cols, float* packed) {
  HWY_DYNAMIC_DISPATCH(PackBf16Activations)(x, batch, cols, packed);
}
void gemm_bf16_packed(const uint16_t* w, size_t rows, size_t cols, const float* packed, size_t batch, float* y,
                      size_t y_stride) {
  HWY_DYNAMIC_DISPATCH(GemmBf16Packed)(w, rows, cols, packed, batch, y, y_stride);
}

void attention(const float* q, size_t q_stride, size_t tokens, size_t heads, size_t position, const float* keys,
               const float* values, size_t kv_stride, size_t head_dim, float scale, float* out, size_t out_stride) {
  HWY_DYNAMIC_DISPATCH(Attention)(q, q_stride, tokens, heads, position, keys, values, kv_stride, head_dim, scale, out,
                                  out_stride);
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
void gemv_q8_0(const std::byte* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride) {
  const size_t blocks = cols / 32;
  for (size_t r = 0; r < rows; ++r) {
    for (size_t b = 0; b < batch; ++b) {
      float sum = 0;
      for (size_t k = 0; k < blocks; ++k) {
        const std::byte* block = w + (r * blocks + k) * 34;
        uint16_t scale;
        std::memcpy(&scale, block, 2);
        float part = 0;
        for (size_t i = 0; i < 32; ++i) {
          part += static_cast<float>(static_cast<int8_t>(block[2 + i])) * x[b * cols + k * 32 + i];
        }
        sum += f16_to_f32(scale) * part;
      }
      y[b * y_stride + r] = sum;
    }
  }
}
void gemm_bf16(const uint16_t* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride) {
  gemv(w, rows, cols, x, batch, y, y_stride);
}
void gemm_f32(const float* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride) {
  gemv(w, rows, cols, x, batch, y, y_stride);
}

// Every score of a query first, then the softmax, then the weighted values.
void attention(const float* q, size_t q_stride, size_t tokens, size_t heads, size_t position, const float* keys,
               const float* values, size_t kv_stride, size_t head_dim, float scale, float* out, size_t out_stride) {
  std::vector<float> scores;
  for (size_t t = 0; t < tokens; ++t) {
    for (size_t h = 0; h < heads; ++h) {
      const float* qi = q + t * q_stride + h * head_dim;
      const size_t visible = position + t + 1;
      scores.resize(visible);
      float max_score = -INFINITY;
      for (size_t j = 0; j < visible; ++j) {
        scores[j] = dot(qi, keys + j * kv_stride, head_dim) * scale;
        max_score = std::max(max_score, scores[j]);
      }
      float sum = 0;
      for (size_t j = 0; j < visible; ++j) sum += scores[j] = std::exp(scores[j] - max_score);
      float* row = out + t * out_stride + h * head_dim;
      std::fill_n(row, head_dim, 0.0f);
      for (size_t j = 0; j < visible; ++j) axpy(scores[j] / sum, values + j * kv_stride, row, head_dim);
    }
  }
}

}  // namespace scalar
}  // namespace rvec::linalg
#endif
