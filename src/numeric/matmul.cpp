#include "numeric/matmul.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <new>
#include <vector>

#include "base/thread_pool.hpp"
#include "numeric/kernels.hpp"
#include "numeric/linalg.hpp"

namespace rvec {
namespace {

// Rows per task: enough that one task's weights (about 256 KiB) amortise
// scheduling, few enough that the cores share the work evenly; a multiple of
// 16 so that the gemm kernel's 4-row tiles divide it.
size_t rows_per_task(const WeightMatrix& w) {
  const size_t row_bytes = w.cols * (w.is_bf16() ? 2 : 4);
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

void WeightMatrix::row_f32(size_t r, float* out) const {
  if (is_bf16()) {
    kernels::bf16_to_f32(bf16.data() + r * cols, out, cols);
  } else {
    std::copy_n(f32.data() + r * cols, cols, out);
  }
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
    } else {
      const float* weights = w.f32.data() + r0 * w.cols;
      (gemv ? linalg::gemv_f32 : linalg::gemm_f32)(weights, rows, w.cols, x, n, y + r0, w.rows);
    }
  });
  add_bias(w, n, y);
}

}  // namespace rvec
