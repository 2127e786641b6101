#include "numeric/matmul.hpp"

#include <cblas.h>

#include <algorithm>
#include <mutex>

#include "base/thread_pool.hpp"
#include "numeric/kernels.hpp"
#include "numeric/linalg.hpp"

namespace rvec {
namespace {

// The engine parallelises across weight rows itself; OpenBLAS must not start
// its own threads on top of ours.
void single_threaded_blas() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

// Rows per task: enough that one task's weights (about 256 KiB) amortise
// scheduling, few enough that the cores share the work evenly.
size_t rows_per_task(const WeightMatrix& w) {
  const size_t row_bytes = w.cols * (w.is_bf16() ? 2 : 4);
  return std::clamp<size_t>((256 << 10) / std::max<size_t>(row_bytes, 1), 16, 1024);
}

void add_bias(const WeightMatrix& w, size_t n, float* y) {
  if (w.bias.empty()) return;
  for (size_t b = 0; b < n; ++b) {
    float* row = y + b * w.rows;
    for (size_t r = 0; r < w.rows; ++r) row[r] += w.bias[r];
  }
}

}  // namespace

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
  if (n <= kGemvMaxBatch) {
    pool.parallel_for(tasks, [&](size_t task) {
      const size_t r0 = task * block, rows = std::min(block, w.rows - r0);
      if (w.is_bf16()) {
        linalg::gemv_bf16(w.bf16.data() + r0 * w.cols, rows, w.cols, x, n, y + r0, w.rows);
      } else {
        linalg::gemv_f32(w.f32.data() + r0 * w.cols, rows, w.cols, x, n, y + r0, w.rows);
      }
    });
  } else {
    single_threaded_blas();
    pool.parallel_for(tasks, [&](size_t task) {
      const size_t r0 = task * block, rows = std::min(block, w.rows - r0);
      const float* weights = w.f32.data() + r0 * w.cols;
      thread_local std::vector<float> widened;
      if (w.is_bf16()) {
        widened.resize(rows * w.cols);
        kernels::bf16_to_f32(w.bf16.data() + r0 * w.cols, widened.data(), rows * w.cols);
        weights = widened.data();
      }
      // y[:, r0:r0+rows] = x · weights_blockᵀ
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(rows),
                  static_cast<int>(w.cols), 1.0f, x, static_cast<int>(w.cols), weights, static_cast<int>(w.cols),
                  0.0f, y + r0, static_cast<int>(w.rows));
    });
  }
  add_bias(w, n, y);
}

}  // namespace rvec
