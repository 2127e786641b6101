#include "numeric/matmul.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <vector>

#include "base/thread_pool.hpp"
#include "numeric/kernels.hpp"
#include "numeric/linalg.hpp"
#include "numeric/quant.hpp"

namespace rvec {
namespace {

// Rows per task: enough that one task's weights (about 256 KiB) amortise
// scheduling, few enough that the cores share the work evenly; a multiple of
// 16 so that the gemm kernel's 4-row tiles divide it.
size_t rows_per_task(const WeightMatrix& w) {
  const size_t row_bytes = encoded_bytes(w.encoding(), 1, w.cols);
  return std::clamp<size_t>((256 << 10) / std::max<size_t>(row_bytes, 1), 16, 1024) / 16 * 16;
}

void add_bias(const WeightMatrix& w, size_t n, float* y) {
  if (w.bias.empty()) return;
  for (size_t b = 0; b < n; ++b) {
    float* row = y + b * w.rows;
    for (size_t r = 0; r < w.rows; ++r) row[r] += w.bias[r];
  }
}

}  // namespace

void* allocate_weights(size_t bytes) {
  constexpr size_t kHugePage = size_t(2) << 20;
  const size_t alignment = bytes >= kHugePage ? kHugePage : 64;
  void* p = std::aligned_alloc(alignment, (std::max<size_t>(bytes, 1) + alignment - 1) / alignment * alignment);
  if (p == nullptr) throw std::bad_alloc();
  // Only a hint: without huge pages the weights work the same, only slower.
  if (alignment == kHugePage) madvise(p, bytes, MADV_HUGEPAGE);
  return p;
}

WeightEncoding WeightMatrix::encoding() const {
  return is_bf16() ? WeightEncoding::kBF16 : is_q8_0() ? WeightEncoding::kQ8_0 : WeightEncoding::kF32;
}

uint64_t encoded_bytes(WeightEncoding encoding, uint64_t rows, uint64_t cols) {
  switch (encoding) {
    case WeightEncoding::kBF16: return rows * cols * 2;
    case WeightEncoding::kQ8_0: return rows * cols / quant::kQ8_0Elements * quant::kQ8_0Bytes;
    case WeightEncoding::kF32: break;
  }
  return rows * cols * 4;
}

void WeightMatrix::row_f32(size_t r, float* out) const {
  switch (encoding()) {
    case WeightEncoding::kBF16: kernels::bf16_to_f32(bf16.data() + r * cols, out, cols); break;
    case WeightEncoding::kQ8_0:
      quant::dequantize_q8_0(q8_0.data() + encoded_bytes(WeightEncoding::kQ8_0, r, cols), std::span(out, cols));
      break;
    case WeightEncoding::kF32: std::copy_n(f32.data() + r * cols, cols, out); break;
  }
}

void WeightMatrix::widen_to_f32() {
  if (encoding() == WeightEncoding::kF32) return;
  std::vector<float, WeightAllocator<float>> wide(rows * cols);
  for (size_t r = 0; r < rows; ++r) row_f32(r, wide.data() + r * cols);
  f32 = std::move(wide);
  bf16 = {};
  q8_0 = {};
}

void WeightMatrix::append_rows(WeightEncoding encoding, std::span<const std::byte> data, size_t count, size_t width) {
  if (rows == 0) cols = width;
  if (rows > 0 && encoding != this->encoding()) widen_to_f32();
  if (rows > 0 && this->encoding() == WeightEncoding::kF32 && encoding != WeightEncoding::kF32) {
    WeightMatrix part;  // the new rows widened on their own
    part.append_rows(encoding, data, count, width);
    part.widen_to_f32();
    f32.insert(f32.end(), part.f32.begin(), part.f32.end());
  } else if (encoding == WeightEncoding::kBF16) {
    const size_t at = bf16.size();
    bf16.resize(at + count * width);
    std::memcpy(bf16.data() + at, data.data(), data.size());
  } else if (encoding == WeightEncoding::kQ8_0) {
    q8_0.insert(q8_0.end(), data.begin(), data.end());
  } else {
    const size_t at = f32.size();
    f32.resize(at + count * width);
    std::memcpy(f32.data() + at, data.data(), data.size());
  }
  rows += count;
}

void matmul(const WeightMatrix& w, const float* x, size_t n, float* y, ThreadPool& pool) {
  const size_t block = rows_per_task(w);
  const size_t tasks = (w.rows + block - 1) / block;
  const bool gemv = n <= kGemvMaxBatch;
  // x in the bf16 gemm kernel's order, packed by this thread for all the
  // tasks (which reach it through the pointer, not the thread-local name).
  thread_local std::vector<float> packed;
  if (!gemv && w.is_bf16()) {
    packed.resize(n * w.cols);
    linalg::pack_bf16_activations(x, n, w.cols, packed.data());
  }
  const float* packed_x = packed.data();
  pool.parallel_for(tasks, [&](size_t task) {
    const size_t r0 = task * block, rows = std::min(block, w.rows - r0);
    if (w.is_bf16()) {
      const uint16_t* weights = w.bf16.data() + r0 * w.cols;
      if (gemv) {
        linalg::gemv_bf16(weights, rows, w.cols, x, n, y + r0, w.rows);
      } else {
        linalg::gemm_bf16_packed(weights, rows, w.cols, packed_x, n, y + r0, w.rows);
      }
    } else if (w.is_q8_0()) {
      const std::byte* weights = w.q8_0.data() + encoded_bytes(WeightEncoding::kQ8_0, r0, w.cols);
      if (gemv) {
        linalg::gemv_q8_0(weights, rows, w.cols, x, n, y + r0, w.rows);
      } else {
        thread_local std::vector<float> wide;  // this task's rows as f32
        wide.resize(rows * w.cols);
        quant::dequantize_q8_0(weights, wide);
        linalg::gemm_f32(wide.data(), rows, w.cols, x, n, y + r0, w.rows);
      }
    } else {
      const float* weights = w.f32.data() + r0 * w.cols;
      (gemv ? linalg::gemv_f32 : linalg::gemm_f32)(weights, rows, w.cols, x, n, y + r0, w.rows);
    }
  });
  add_bias(w, n, y);
}

}  // namespace rvec
