// Matrix products against model weights, the engine's only heavy operation.
//
// Weights stay in their stored format (bf16 as bits, f32, or ggml's Q8_0
// blocks from a GGUF file) so that decoding streams the fewest bytes. A few rows of activations (decoding) go through
// the Highway gemv kernels, reading each weight once for the whole batch;
// more rows (prompts, batched decoding) go through the register-tiled Highway
// gemm, which widens bf16 in registers and is compute bound. Q8_0 rows go
// through their own gemv kernel; for more rows each task widens its block of
// Q8_0 rows to f32 once and runs the f32 gemm.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
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

// How a WeightMatrix stores its values.
enum class WeightEncoding { kF32, kBF16, kQ8_0 };

struct WeightMatrix {
  size_t rows = 0, cols = 0;  // [out_features, in_features], as stored by PyTorch
  // Exactly one of these holds the rows * cols values (none while rows is 0):
  std::vector<uint16_t, WeightAllocator<uint16_t>> bf16;  // bf16 bits
  std::vector<float, WeightAllocator<float>> f32;
  std::vector<std::byte, WeightAllocator<std::byte>> q8_0;  // Q8_0 blocks (quant.hpp), cols a multiple of 32
  std::vector<float> bias;     // [rows] or empty

  bool is_bf16() const { return !bf16.empty(); }
  bool is_q8_0() const { return !q8_0.empty(); }
  WeightEncoding encoding() const;
  uint64_t bytes() const { return bf16.size() * 2 + f32.size() * 4 + q8_0.size(); }
  // Row `r` widened to f32 into `out` [cols].
  void row_f32(size_t r, float* out) const;
  // Appends `count` rows of `width` values stored as `encoding` (`data`
  // holds exactly their bytes; `width` must equal cols once rows exist). A matrix keeps its parts' encoding while they
  // agree; when they differ (a GGUF file's Q8_0 q/k beside a Q6_K-fallback v)
  // everything is widened to f32, exactly.
  void append_rows(WeightEncoding encoding, std::span<const std::byte> data, size_t count, size_t width);
  // Widens the stored values to f32 (exact for every encoding).
  void widen_to_f32();
};

// Bytes of `rows` rows of `cols` values in `encoding`.
uint64_t encoded_bytes(WeightEncoding encoding, uint64_t rows, uint64_t cols);

// y: [n, w.rows] = x: [n, w.cols] · wᵀ (+ bias)
void matmul(const WeightMatrix& w, const float* x, size_t n, float* y, ThreadPool& pool);

// Batch sizes up to this use the gemv kernels (decoding one to three
// sequences: bound by memory either way); larger ones use the register-tiled
// gemm, which widens each bf16 weight once per 6 tokens instead of once per 4
// and was 20 % (batch 8) to 2x (batch 32) faster per CPU second.
inline constexpr size_t kGemvMaxBatch = 3;

}  // namespace rvec
