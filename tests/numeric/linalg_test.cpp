#include "numeric/linalg.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "base/thread_pool.hpp"
#include "numeric/convert.hpp"
#include "numeric/matmul.hpp"
#include "numeric/quant.hpp"

namespace rvec {
namespace {

std::vector<float> random_floats(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

// SIMD and scalar sums differ only in order and fusing: bound by n·eps·sum|a·b|.
double tolerance(const float* a, const float* b, size_t n) {
  double magnitude = 0;
  for (size_t i = 0; i < n; ++i) magnitude += std::abs(double(a[i]) * b[i]);
  return 2.0 * static_cast<double>(n) * 1.2e-7 * magnitude + 1e-30;
}

TEST(Linalg, DotAndAxpyMatchScalarTwins) {
  for (size_t n : {0u, 1u, 7u, 16u, 33u, 896u, 4865u}) {
    const auto a = random_floats(n, n), b = random_floats(n, n + 1);
    EXPECT_NEAR(linalg::dot(a.data(), b.data(), n), linalg::scalar::dot(a.data(), b.data(), n),
                tolerance(a.data(), b.data(), n)) << n;
    auto y1 = random_floats(n, 7), y2 = y1;
    linalg::axpy(0.37f, a.data(), y1.data(), n);
    linalg::scalar::axpy(0.37f, a.data(), y2.data(), n);
    for (size_t i = 0; i < n; ++i) EXPECT_NEAR(y1[i], y2[i], 1e-6 * (1 + std::abs(y2[i]))) << n << " " << i;
  }
}

void expect_gemv_matches_scalar_twin(size_t rows, size_t cols) {
  const auto w32 = random_floats(rows * cols, 1);
  std::vector<uint16_t> w16(rows * cols);
  std::vector<float> w16_as_f32(rows * cols);
  for (size_t i = 0; i < w16.size(); ++i) w16_as_f32[i] = bf16_to_f32(w16[i] = f32_to_bf16(w32[i]));
  for (size_t batch = 1; batch <= 9; ++batch) {
    const auto x = random_floats(batch * cols, 100 + batch);
    std::vector<float> simd(batch * rows), twin(batch * rows);
    linalg::gemv_bf16(w16.data(), rows, cols, x.data(), batch, simd.data(), rows);
    linalg::scalar::gemv_bf16(w16.data(), rows, cols, x.data(), batch, twin.data(), rows);
    for (size_t b = 0; b < batch; ++b) {
      for (size_t r = 0; r < rows; ++r) {
        EXPECT_NEAR(simd[b * rows + r], twin[b * rows + r],
                    tolerance(w16_as_f32.data() + r * cols, x.data() + b * cols, cols));
      }
    }
    linalg::gemv_f32(w32.data(), rows, cols, x.data(), batch, simd.data(), rows);
    linalg::scalar::gemv_f32(w32.data(), rows, cols, x.data(), batch, twin.data(), rows);
    for (size_t i = 0; i < simd.size(); ++i) {
      EXPECT_NEAR(simd[i], twin[i], tolerance(w32.data() + (i % rows) * cols, x.data() + (i / rows) * cols, cols));
    }
  }
}

TEST(Linalg, GemvMatchesScalarTwinForEveryBatchSize) { expect_gemv_matches_scalar_twin(37, 70); }

// The gemv kernels prefetch 8 KiB ahead of the row they read, up to the end
// of the matrix: 300 rows of 896 bf16 columns span 525 KiB, so every row but
// the last few is prefetched.
TEST(Linalg, GemvMatchesScalarTwinPastThePrefetchDistance) { expect_gemv_matches_scalar_twin(300, 896); }

// Shapes that hit every tile remainder (rows % 4, tokens % 4), more than one
// column chunk (1024) and a column tail that is not a whole SIMD block.
TEST(Linalg, GemmMatchesScalarTwinForEveryTileRemainder) {
  for (const size_t cols : {8u, 70u, 1024u, 2100u}) {
    const size_t rows = 11;
    const auto w32 = random_floats(rows * cols, cols);
    std::vector<uint16_t> w16(rows * cols);
    std::vector<float> w16_as_f32(rows * cols);
    for (size_t i = 0; i < w16.size(); ++i) w16_as_f32[i] = bf16_to_f32(w16[i] = f32_to_bf16(w32[i]));
    for (const size_t batch : {1u, 2u, 3u, 4u, 5u, 9u}) {
      const auto x = random_floats(batch * cols, 100 + batch);
      const size_t y_stride = rows + 3;  // a column block of a wider output
      std::vector<float> simd(batch * y_stride, -1.0f), twin = simd;
      linalg::gemm_bf16(w16.data(), rows, cols, x.data(), batch, simd.data(), y_stride);
      linalg::scalar::gemm_bf16(w16.data(), rows, cols, x.data(), batch, twin.data(), y_stride);
      for (size_t b = 0; b < batch; ++b) {
        for (size_t r = 0; r < rows; ++r) {
          EXPECT_NEAR(simd[b * y_stride + r], twin[b * y_stride + r],
                      tolerance(w16_as_f32.data() + r * cols, x.data() + b * cols, cols))
              << "bf16 cols " << cols << " batch " << batch << " row " << r;
          EXPECT_EQ(simd[b * y_stride + rows], -1.0f) << "wrote past the row block";
        }
      }
      linalg::gemm_f32(w32.data(), rows, cols, x.data(), batch, simd.data(), y_stride);
      linalg::scalar::gemm_f32(w32.data(), rows, cols, x.data(), batch, twin.data(), y_stride);
      for (size_t b = 0; b < batch; ++b) {
        for (size_t r = 0; r < rows; ++r) {
          EXPECT_NEAR(simd[b * y_stride + r], twin[b * y_stride + r],
                      tolerance(w32.data() + r * cols, x.data() + b * cols, cols))
              << "f32 cols " << cols << " batch " << batch << " row " << r;
        }
      }
    }
  }
}

// Tiled online-softmax attention against the two-pass twin: contexts that end
// inside, at and past a key tile (64), several query heads per KV head, head
// sizes that are and are not a whole number of vectors, and scores large
// enough that a later tile raises the running maximum.
TEST(Linalg, AttentionMatchesScalarTwin) {
  for (const size_t head_dim : {8u, 20u, 64u}) {
    for (const size_t position : {0u, 5u, 63u, 64u, 130u}) {
      const size_t tokens = 7, heads = 3, kv_stride = head_dim + 5, total = position + tokens;
      const size_t q_stride = heads * head_dim + 11, out_stride = heads * head_dim + 2;
      auto q = random_floats(tokens * q_stride, position + head_dim);
      for (auto& v : q) v *= 3.0f;
      const auto keys = random_floats(total * kv_stride, 1000 + position), values = random_floats(total * kv_stride, 7);
      std::vector<float> simd(tokens * out_stride, -1.0f), twin = simd;
      const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
      linalg::attention(q.data(), q_stride, tokens, heads, position, keys.data(), values.data(), kv_stride, head_dim,
                        scale, simd.data(), out_stride);
      linalg::scalar::attention(q.data(), q_stride, tokens, heads, position, keys.data(), values.data(), kv_stride,
                                head_dim, scale, twin.data(), out_stride);
      for (size_t i = 0; i < simd.size(); ++i) {
        EXPECT_NEAR(simd[i], twin[i], 1e-5 * (1 + std::abs(twin[i])))
            << "head_dim " << head_dim << " position " << position << " index " << i;
      }
    }
  }
}

// The gemv path (small batches) and the gemm path (large) agree, bias
// included; rows of 8 KiB make 10 tasks on two threads, which all read the
// activations the calling thread packed.
TEST(Matmul, GemvAndGemmPathsAgree) {
  WeightMatrix w;
  w.rows = 300;
  w.cols = 4096;
  for (float v : random_floats(w.rows * w.cols, 5)) w.bf16.push_back(f32_to_bf16(v));
  w.bias = random_floats(w.rows, 6);
  const size_t n = kGemvMaxBatch + 4;
  const auto x = random_floats(n * w.cols, 9);
  ThreadPool pool(2);
  std::vector<float> all(n * w.rows), one(w.rows);
  matmul(w, x.data(), n, all.data(), pool);
  std::vector<float> row(w.cols);
  for (size_t b = 0; b < n; ++b) {
    matmul(w, x.data() + b * w.cols, 1, one.data(), pool);
    for (size_t r = 0; r < w.rows; ++r) {
      w.row_f32(r, row.data());
      EXPECT_NEAR(all[b * w.rows + r], one[r], tolerance(row.data(), x.data() + b * w.cols, w.cols) + 1e-6);
    }
  }
}

// Q8_0 rows of `rows` x `cols` random weights (ggml's quantiser), and the same values as f32.
std::pair<std::vector<std::byte>, std::vector<float>> q8_0_rows(size_t rows, size_t cols, uint64_t seed) {
  const auto w = random_floats(rows * cols, seed);
  std::vector<std::byte> blocks(rows * cols / quant::kQ8_0Elements * quant::kQ8_0Bytes);
  quant::quantize_q8_0(w, blocks.data());
  std::vector<float> values(rows * cols);
  quant::dequantize_q8_0(blocks.data(), values);
  return {blocks, values};
}

TEST(Linalg, GemvQ8_0MatchesScalarTwinForEveryBatchSize) {
  const size_t rows = 37, cols = 96;
  const auto [blocks, values] = q8_0_rows(rows, cols, 11);
  for (size_t batch = 1; batch <= 9; ++batch) {
    const auto x = random_floats(batch * cols, 200 + batch);
    std::vector<float> simd(batch * rows), twin(batch * rows), f32(batch * rows);
    linalg::gemv_q8_0(blocks.data(), rows, cols, x.data(), batch, simd.data(), rows);
    linalg::scalar::gemv_q8_0(blocks.data(), rows, cols, x.data(), batch, twin.data(), rows);
    linalg::scalar::gemv_f32(values.data(), rows, cols, x.data(), batch, f32.data(), rows);
    for (size_t b = 0; b < batch; ++b) {
      for (size_t r = 0; r < rows; ++r) {
        const double tol = tolerance(values.data() + r * cols, x.data() + b * cols, cols);
        EXPECT_NEAR(simd[b * rows + r], twin[b * rows + r], tol) << batch << " " << r;
        EXPECT_NEAR(twin[b * rows + r], f32[b * rows + r], tol) << batch << " " << r;  // the twin computes d * q * x
      }
    }
  }
}

// Q8_0 weights through matmul: the gemv kernel for a few rows, the widened
// gemm for more, both the product of the dequantised values.
TEST(Matmul, Q8_0MatchesItsDequantisedValuesOnBothPaths) {
  const size_t rows = 70, cols = 256;
  const auto [blocks, values] = q8_0_rows(rows, cols, 12);
  WeightMatrix w;
  w.append_rows(WeightEncoding::kQ8_0, blocks, rows, cols);
  ASSERT_TRUE(w.is_q8_0());
  EXPECT_EQ(w.bytes(), blocks.size());
  ThreadPool pool(2);
  for (const size_t n : {size_t{1}, kGemvMaxBatch, kGemvMaxBatch + 5}) {
    const auto x = random_floats(n * cols, 300 + n);
    std::vector<float> got(n * rows), want(n * rows);
    matmul(w, x.data(), n, got.data(), pool);
    linalg::scalar::gemv_f32(values.data(), rows, cols, x.data(), n, want.data(), rows);
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_NEAR(got[i], want[i], tolerance(values.data() + (i % rows) * cols, x.data() + (i / rows) * cols, cols))
          << n << " " << i;
    }
  }
  std::vector<float> row(cols);
  w.row_f32(5, row.data());
  EXPECT_TRUE(std::equal(row.begin(), row.end(), values.begin() + 5 * cols));
}

// Parts in different encodings (a GGUF file's Q8_0 q/k beside an f32 v) widen the matrix to f32, exactly.
TEST(Matmul, MixedEncodingsWidenToF32Exactly) {
  const size_t cols = 64;
  const auto [blocks, values] = q8_0_rows(2, cols, 13);
  const auto bf16_source = random_floats(cols, 14);
  std::vector<uint16_t> bf16(cols);
  for (size_t i = 0; i < cols; ++i) bf16[i] = f32_to_bf16(bf16_source[i]);
  const auto f32 = random_floats(cols, 15);
  WeightMatrix w;
  w.append_rows(WeightEncoding::kQ8_0, blocks, 2, cols);
  w.append_rows(WeightEncoding::kBF16, std::as_bytes(std::span(bf16)), 1, cols);
  w.append_rows(WeightEncoding::kF32, std::as_bytes(std::span(f32)), 1, cols);
  ASSERT_EQ(w.encoding(), WeightEncoding::kF32);
  ASSERT_EQ(w.rows, 4u);
  for (size_t i = 0; i < cols; ++i) {
    EXPECT_EQ(w.f32[i], values[i]);
    EXPECT_EQ(w.f32[cols + i], values[cols + i]);
    EXPECT_EQ(w.f32[2 * cols + i], bf16_to_f32(bf16[i]));
    EXPECT_EQ(w.f32[3 * cols + i], f32[i]);
  }
}

TEST(ThreadPool, RunsEveryIndexOnceAndRethrows) {
  ThreadPool pool(3);
  std::vector<std::atomic<int>> hits(1000);
  pool.parallel_for(hits.size(), [&](size_t i) { hits[i]++; });
  for (const auto& h : hits) EXPECT_EQ(h.load(), 1);
  EXPECT_THROW(pool.parallel_for(10, [](size_t i) { if (i == 7) throw std::runtime_error("boom"); }), std::runtime_error);
  pool.parallel_for(4, [&](size_t i) { hits[i]++; });  // still usable
  EXPECT_EQ(hits[3].load(), 2);
}

}  // namespace
}  // namespace rvec
