// Matrix products against model weights, the engine's only heavy operation.
//
// Weights stay in their stored format (bf16 as bits, or f32) so that decoding
// streams the fewest bytes. A few rows of activations (decoding) go through
// the Highway gemv kernels, reading each weight once for the whole batch;
// many rows (prompts, big batches) convert a block of weight rows to f32 in a
// per-thread buffer and hand it to OpenBLAS sgemm, which is compute bound.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace rvec {

class ThreadPool;

struct WeightMatrix {
  size_t rows = 0, cols = 0;   // [out_features, in_features], as stored by PyTorch
  std::vector<uint16_t> bf16;  // either this (bf16 bits) ...
  std::vector<float> f32;      // ... or this holds rows * cols values
  std::vector<float> bias;     // [rows] or empty

  bool is_bf16() const { return !bf16.empty(); }
  uint64_t bytes() const { return bf16.size() * 2 + f32.size() * 4; }
  // Row `r` widened to f32 into `out` [cols].
  void row_f32(size_t r, float* out) const;
};

// y: [n, w.rows] = x: [n, w.cols] · wᵀ (+ bias)
void matmul(const WeightMatrix& w, const float* x, size_t n, float* y, ThreadPool& pool);

// Batch sizes up to this use the gemv kernels (measured faster than converting
// weights for sgemm up to batch 32 on AVX-512); larger ones (prompts) use sgemm.
inline constexpr size_t kGemvMaxBatch = 64;

}  // namespace rvec
