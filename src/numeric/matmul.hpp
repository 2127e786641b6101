// Matrix products against model weights, the engine's only heavy operation.
//
// Weights stay in their stored format (bf16 as bits, or f32) so that decoding
// streams the fewest bytes. A few rows of activations (decoding) go through
// the Highway gemv kernels, reading each weight once for the whole batch;
// more rows (prompts, batched decoding) go through the register-tiled Highway
// gemm, which widens bf16 in registers and is compute bound.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace rvec {

class ThreadPool;

// Allocates weight storage of 2 MiB or more on 2 MiB boundaries and asks the
// kernel for transparent huge pages (madvise), which this machine grants only
// on request: a decode step streams every weight, and with 4 KiB pages it
// takes a TLB miss every 4 KiB. Smaller buffers are 64-byte aligned. Stateless.
template <typename T>
struct WeightAllocator {
  using value_type = T;
  WeightAllocator() = default;
  template <typename U>
  WeightAllocator(const WeightAllocator<U>&) {}
  T* allocate(size_t n);
  void deallocate(T* p, size_t) { std::free(p); }
  friend bool operator==(const WeightAllocator&, const WeightAllocator&) { return true; }
};

void* allocate_weights(size_t bytes);  // as WeightAllocator describes; throws std::bad_alloc

template <typename T>
T* WeightAllocator<T>::allocate(size_t n) {
  return static_cast<T*>(allocate_weights(n * sizeof(T)));
}

struct WeightMatrix {
  size_t rows = 0, cols = 0;  // [out_features, in_features], as stored by PyTorch
  std::vector<uint16_t, WeightAllocator<uint16_t>> bf16;  // either this (bf16 bits) ...
  std::vector<float, WeightAllocator<float>> f32;         // ... or this holds rows * cols values
  std::vector<float> bias;     // [rows] or empty

  bool is_bf16() const { return !bf16.empty(); }
  uint64_t bytes() const { return bf16.size() * 2 + f32.size() * 4; }
  // Row `r` widened to f32 into `out` [cols].
  void row_f32(size_t r, float* out) const;
};

// y: [n, w.rows] = x: [n, w.cols] · wᵀ (+ bias)
void matmul(const WeightMatrix& w, const float* x, size_t n, float* y, ThreadPool& pool);

// Batch sizes up to this use the gemv kernels (decoding one to three
// sequences: bound by memory either way); larger ones use the register-tiled
// gemm, which widens each bf16 weight once per 6 tokens instead of once per 4
// and was 20 % (batch 8) to 2x (batch 32) faster per CPU second.
inline constexpr size_t kGemvMaxBatch = 3;

}  // namespace rvec
