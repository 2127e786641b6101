// Kernels of the inference engine's hot path, each with a plain scalar twin
// (linalg::scalar) that tests compare against. These accumulate in f32 with
// fused multiply-add in a different order than the twins, so the two agree to
// rounding (relative to sum |a*b|), not bit for bit.
#pragma once

#include <cstddef>
#include <cstdint>

namespace rvec::linalg {

// sum_i a[i] * b[i]
float dot(const float* a, const float* b, size_t n);
// y[i] += alpha * x[i]
void axpy(float alpha, const float* x, float* y, size_t n);

// Skinny matrix product for decoding a few sequences, weights read once:
//   w: [rows, cols] (bf16 bits or f32), x: [batch, cols]
//   y[b * y_stride + r] = dot(w[r, :], x[b, :])   for r < rows, b < batch
void gemv_bf16(const uint16_t* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride);
void gemv_f32(const float* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride);
// The same for ggml's Q8_0 rows: w holds rows * cols / 32 blocks of 34 bytes
// (an f16 scale d, then 32 int8 q; element = d * q), cols a multiple of 32.
// Each block's 32 products q * x are summed in f32, then scaled by d into
// the row's f32 sum: activations stay f32 (llama.cpp instead rounds them to
// Q8_0 too, so the two differ by that rounding).
void gemv_q8_0(const std::byte* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride);

// The same product for many activation rows (prompts, large batches), in
// register tiles of 4 weight rows x 6 activation rows over chunks of 1024
// columns: weights stay in cache across the tokens of a tile, activations
// across the rows. bf16 weights are widened in registers, never in memory.
// gemm_bf16 first packs x into a thread-local buffer; callers that split the
// rows among tasks pack once with pack_bf16_activations (packed: [batch, cols],
// in a kernel-specific column order) and call gemm_bf16_packed per task.
void gemm_bf16(const uint16_t* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride);
void gemm_f32(const float* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride);
void pack_bf16_activations(const float* x, size_t batch, size_t cols, float* packed);
void gemm_bf16_packed(const uint16_t* w, size_t rows, size_t cols, const float* packed, size_t batch, float* y,
                      size_t y_stride);

// Causal attention of `tokens` consecutive tokens at positions position,
// position+1, ... for `heads` query heads that share one key/value head:
//   q row (t, h) at q[t * q_stride + h * head_dim], [head_dim]
//   keys, values: row j at keys[j * kv_stride], [head_dim], j < position + tokens
//   out row (t, h) = softmax_j(scale · q·k_j, j <= position + t) · v_j,
//   at out[t * out_stride + h * head_dim]
// Keys go in tiles with an online softmax, so memory does not grow with the
// square of the context. Not reentrant per thread (thread-local tile buffers).
void attention(const float* q, size_t q_stride, size_t tokens, size_t heads, size_t position, const float* keys,
               const float* values, size_t kv_stride, size_t head_dim, float scale, float* out, size_t out_stride);

namespace scalar {
float dot(const float* a, const float* b, size_t n);
void axpy(float alpha, const float* x, float* y, size_t n);
void gemv_bf16(const uint16_t* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride);
void gemv_f32(const float* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride);
void gemv_q8_0(const std::byte* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride);
void gemm_bf16(const uint16_t* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride);
void gemm_f32(const float* w, size_t rows, size_t cols, const float* x, size_t batch, float* y, size_t y_stride);
void attention(const float* q, size_t q_stride, size_t tokens, size_t heads, size_t position, const float* keys,
               const float* values, size_t kv_stride, size_t head_dim, float scale, float* out, size_t out_stride);
}  // namespace scalar

}  // namespace rvec::linalg
