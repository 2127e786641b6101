#include "numeric/quant.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "numeric/convert.hpp"

// Transcribed from ggml-quants.c (MIT): the expressions keep ggml's order of
// f32 operations so that the results round exactly as ggml's do. Comments
// name the ggml function each piece mirrors.
namespace rvec::quant {
namespace {

constexpr float kGroupMaxEps = 1e-15f;  // GROUP_MAX_EPS
constexpr uint16_t kF16Nan = 0x7E00;

// nearest_int(): round half to even through the f32 adder (|x| <= 4194303).
int nearest_int(float x) {
  const float shifted = x + 12582912.f;
  int32_t bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  return (bits & 0x007fffff) - 0x00400000;
}

float f16_at(const std::byte* p) {
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  return f16_to_f32(bits);
}

void put_f16(std::byte* p, uint16_t bits) { std::memcpy(p, &bits, 2); }
void put_f16(std::byte* p, float value) { put_f16(p, f32_to_f16(value)); }

// C's float -> int8_t conversion as ggml's x86 build performs it (cvttss2si,
// then the low byte), without the undefined behaviour: truncation toward zero
// for values an int32 holds, 0 for NaN and anything larger. Only tiny blocks
// (an inverse scale that overflows to Inf) reach the second case.
int8_t to_int8(float v) {
  if (!(std::fabs(v) < 2147483648.0f)) return 0;
  return static_cast<int8_t>(static_cast<int32_t>(v));
}

// roundf() (half away from zero) followed by to_int8(), inline: the libm
// call was a third of Q8_0's time. `v - i` is exact, so the tie test is too.
int8_t round_to_int8(float v) {
  if (!(std::fabs(v) < 2147483648.0f)) return 0;
  int32_t i = static_cast<int32_t>(v);
  const float rest = v - static_cast<float>(i);
  if (rest >= 0.5f) ++i;
  if (rest <= -0.5f) --i;
  return static_cast<int8_t>(i);
}

bool all_finite(const float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) return false;
  }
  return true;
}

// A block with NaN or Inf: zero quants and NaN scales at `scales` (offsets in the block).
void write_nan_block(std::byte* out, size_t bytes, std::initializer_list<size_t> scales) {
  std::memset(out, 0, bytes);
  for (size_t offset : scales) put_f16(out + offset, kF16Nan);
}

// ---------------------------------------------------------------- Q8_0 --

void q8_0_block(const float* x, std::byte* out) {  // quantize_row_q8_0_ref
  float amax = 0.0f;
  for (size_t j = 0; j < kQ8_0Elements; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_f16(out, d);
  for (size_t j = 0; j < kQ8_0Elements; ++j) {
    out[2 + j] = static_cast<std::byte>(round_to_int8(x[j] * id));
  }
}

// ---------------------------------------------------------------- Q5_0 --

void q5_0_block(const float* x, std::byte* out) {  // quantize_row_q5_0_ref
  float amax = 0.0f, max = 0.0f;
  for (size_t j = 0; j < kQ5_0Elements; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  const float d = max / -16;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_f16(out, d);
  uint32_t qh = 0;
  for (size_t j = 0; j < kQ5_0Elements / 2; ++j) {
    const float x0 = x[j] * id;
    const float x1 = x[kQ5_0Elements / 2 + j] * id;
    const auto xi0 = static_cast<uint8_t>(std::min(31, static_cast<int>(to_int8(x0 + 16.5f))));
    const auto xi1 = static_cast<uint8_t>(std::min(31, static_cast<int>(to_int8(x1 + 16.5f))));
    out[6 + j] = static_cast<std::byte>((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
    qh |= ((xi0 & 0x10u) >> 4) << j;
    qh |= ((xi1 & 0x10u) >> 4) << (j + kQ5_0Elements / 2);
  }
  for (int b = 0; b < 4; ++b) out[2 + b] = static_cast<std::byte>(qh >> (8 * b));
}

// ---------------------------------------------------------------- Q4_K --

// make_qkx2_quants(): scale and min of one sub-block for quants 0..nmax,
// searching nstep + 1 scales around the min-max fit.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min, uint8_t* Laux,
                       float rmin, float rdelta, int nstep) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    std::fill_n(L, n, uint8_t{0});
    *the_min = -min;
    return 0.f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    float diff = scale * L[i] + min - x[i];
    diff = diff * diff;
    best_error += weights[i] * diff;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * (x[i] - min));
      l = std::max(0, std::min(nmax, l));
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * Laux[i] + this_min - x[i];
        diff = diff * diff;
        cur_error += weights[i] * diff;
      }
      if (cur_error < best_error) {
        std::copy_n(Laux, n, L);
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// get_scale_min_k4(): the 6-bit scale and min of sub-block j.
void scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
  }
}

// Layout: d (f16), dmin (f16), scales[12], qs[128].
void q4_k_block(const float* x, std::byte* out) {  // quantize_row_q4_K_ref
  uint8_t L[kQ4_KElements], Laux[32], packed[12] = {};
  float weights[32], mins[8], scales[8];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
    scales[j] = make_qkx2_quants(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -1.f, 0.1f, 20);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  for (int j = 0; j < 8; ++j) {
    const uint8_t ls = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[j])));
    const uint8_t lm = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[j])));
    if (j < 4) {
      packed[j] = ls;
      packed[j + 4] = lm;
    } else {
      packed[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
      packed[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
      packed[j - 0] |= static_cast<uint8_t>((lm >> 4) << 6);
    }
  }
  const uint16_t d_bits = f32_to_f16(max_scale / 63.f), dmin_bits = f32_to_f16(max_min / 63.f);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    scale_min_k4(j, packed, &sc, &m);
    const float d = f16_to_f32(d_bits) * sc;
    if (d == 0.0f) continue;
    const float dm = f16_to_f32(dmin_bits) * m;
    for (int ii = 0; ii < 32; ++ii) {
      const int l = nearest_int((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(15, l)));
    }
  }
  put_f16(out, d_bits);
  put_f16(out + 2, dmin_bits);
  std::memcpy(out + 4, packed, 12);
  std::byte* q = out + 16;
  for (size_t j = 0; j < kQ4_KElements; j += 64) {
    for (size_t l = 0; l < 32; ++l) q[l] = static_cast<std::byte>(L[j + l] | (L[j + l + 32] << 4));
    q += 32;
  }
}

// ---------------------------------------------------------------- Q6_K --

// make_qx_quants() with rmse_type 1 and no importance weights: a symmetric
// scale for quants -nmax..nmax-1 (stored + nmax), refined over 18 trial scales.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    std::fill_n(L, n, int8_t{0});
    return 0.f;
  }
  const auto clamp = [nmax](int l) { return std::max(-nmax, std::min(nmax - 1, l)); };
  float iscale = -nmax / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = clamp(nearest_int(iscale * x[i]));
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = clamp(nearest_int(iscale * x[i]));
      const float w = x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(nmax + clamp(nearest_int(iscale * x[i])));
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Layout: ql[128], qh[64], scales[16] (int8), d (f16).
void q6_k_block(const float* x, std::byte* out) {  // quantize_row_q6_K_ref
  int8_t L[kQ6_KElements];
  float scales[16];
  float max_scale = 0, max_abs_scale = 0;
  for (int ib = 0; ib < 16; ++ib) {
    const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
    scales[ib] = scale;
    const float abs_scale = std::fabs(scale);
    if (abs_scale > max_abs_scale) {
      max_abs_scale = abs_scale;
      max_scale = scale;
    }
  }
  std::memset(out, 0, kQ6_KBytes);
  if (max_abs_scale < kGroupMaxEps) return;  // all zero, d = +0
  const float iscale = -128.f / max_scale;
  const uint16_t d_bits = f32_to_f16(1 / iscale);
  int8_t block_scales[16];
  for (int ib = 0; ib < 16; ++ib) block_scales[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
  for (int j = 0; j < 16; ++j) {
    const float d = f16_to_f32(d_bits) * block_scales[j];
    if (d == 0.0f) continue;
    for (int ii = 0; ii < 16; ++ii) {
      const int l = nearest_int(x[16 * j + ii] / d);
      L[16 * j + ii] = static_cast<int8_t>(std::max(-32, std::min(31, l)) + 32);
    }
  }
  std::byte* ql = out;
  std::byte* qh = out + 128;
  for (size_t j = 0; j < kQ6_KElements; j += 128) {
    for (size_t l = 0; l < 32; ++l) {
      const auto at = [&](size_t k) { return static_cast<uint8_t>(L[j + l + k]); };
      ql[l] = static_cast<std::byte>((at(0) & 0xF) | ((at(64) & 0xF) << 4));
      ql[l + 32] = static_cast<std::byte>((at(32) & 0xF) | ((at(96) & 0xF) << 4));
      qh[l] = static_cast<std::byte>((at(0) >> 4) | ((at(32) >> 4) << 2) | ((at(64) >> 4) << 4) | ((at(96) >> 4) << 6));
    }
    ql += 64;
    qh += 32;
  }
  std::memcpy(out + 192, block_scales, 16);
  put_f16(out + 208, d_bits);
}

// Runs `block` over every block of `in`; blocks with NaN/Inf become NaN blocks.
template <typename Block>
void quantize_blocks(std::span<const float> in, std::byte* out, size_t elements, size_t bytes,
                     std::initializer_list<size_t> scale_offsets, Block block) {
  for (size_t b = 0; b < in.size() / elements; ++b) {
    const float* x = in.data() + b * elements;
    std::byte* y = out + b * bytes;
    if (all_finite(x, elements)) {
      block(x, y);
    } else {
      write_nan_block(y, bytes, scale_offsets);
    }
  }
}

}  // namespace

void quantize_q8_0(std::span<const float> in, std::byte* out) {
  quantize_blocks(in, out, kQ8_0Elements, kQ8_0Bytes, {0}, q8_0_block);
}
void quantize_q5_0(std::span<const float> in, std::byte* out) {
  quantize_blocks(in, out, kQ5_0Elements, kQ5_0Bytes, {0}, q5_0_block);
}
void quantize_q4_k(std::span<const float> in, std::byte* out) {
  quantize_blocks(in, out, kQ4_KElements, kQ4_KBytes, {0, 2}, q4_k_block);
}
void quantize_q6_k(std::span<const float> in, std::byte* out) {
  quantize_blocks(in, out, kQ6_KElements, kQ6_KBytes, {208}, q6_k_block);
}

void dequantize_q8_0(const std::byte* in, std::span<float> out) {
  for (size_t b = 0; b < out.size() / kQ8_0Elements; ++b) {
    const std::byte* block = in + b * kQ8_0Bytes;
    const float d = f16_at(block);
    for (size_t j = 0; j < kQ8_0Elements; ++j) {
      out[b * kQ8_0Elements + j] = static_cast<float>(static_cast<int8_t>(block[2 + j])) * d;
    }
  }
}

void dequantize_q5_0(const std::byte* in, std::span<float> out) {
  for (size_t b = 0; b < out.size() / kQ5_0Elements; ++b) {
    const std::byte* block = in + b * kQ5_0Bytes;
    const float d = f16_at(block);
    uint32_t qh = 0;
    for (int i = 0; i < 4; ++i) qh |= static_cast<uint32_t>(block[2 + i]) << (8 * i);
    float* y = out.data() + b * kQ5_0Elements;
    for (size_t j = 0; j < 16; ++j) {
      const auto q = static_cast<uint8_t>(block[6 + j]);
      const uint8_t xh_0 = ((qh >> j) << 4) & 0x10;
      const uint8_t xh_1 = (qh >> (j + 12)) & 0x10;
      y[j] = static_cast<float>(((q & 0x0F) | xh_0) - 16) * d;
      y[j + 16] = static_cast<float>(((q >> 4) | xh_1) - 16) * d;
    }
  }
}

void dequantize_q4_k(const std::byte* in, std::span<float> out) {
  for (size_t b = 0; b < out.size() / kQ4_KElements; ++b) {
    const std::byte* block = in + b * kQ4_KBytes;
    const float d = f16_at(block), min = f16_at(block + 2);
    const auto* scales = reinterpret_cast<const uint8_t*>(block + 4);
    const auto* q = reinterpret_cast<const uint8_t*>(block + 16);
    float* y = out.data() + b * kQ4_KElements;
    for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
      uint8_t sc, m;
      scale_min_k4(is, scales, &sc, &m);
      const float d1 = d * sc, m1 = min * m;
      scale_min_k4(is + 1, scales, &sc, &m);
      const float d2 = d * sc, m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
    }
  }
}

void dequantize_q6_k(const std::byte* in, std::span<float> out) {
  for (size_t b = 0; b < out.size() / kQ6_KElements; ++b) {
    const std::byte* block = in + b * kQ6_KBytes;
    const float d = f16_at(block + 208);
    const auto* ql = reinterpret_cast<const uint8_t*>(block);
    const auto* qh = reinterpret_cast<const uint8_t*>(block + 128);
    const auto* sc = reinterpret_cast<const int8_t*>(block + 192);
    float* y = out.data() + b * kQ6_KElements;
    for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * sc[is] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
    }
  }
}

}  // namespace rvec::quant
