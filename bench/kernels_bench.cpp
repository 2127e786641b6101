// Throughput of the merge kernels, SIMD versus scalar twin, on L2-sized blocks.
// Bytes counted: for the full combine, the bf16 bytes of three inputs read
// plus one output written (what the disk would move).
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "numeric/codec.hpp"
#include "numeric/convert.hpp"
#include "numeric/kernels.hpp"
#include "numeric/linalg.hpp"
#include "numeric/matmul.hpp"

namespace {

constexpr size_t kN = 1 << 16;

std::vector<float> random_floats(uint64_t seed) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::uniform_real_distribution<float> dist(-0.05f, 0.05f);
  std::vector<float> v(kN);
  for (auto& x : v) x = dist(rng);
  return v;
}

template <bool kSimd>
void BM_Subtract(benchmark::State& state) {
  const auto a = random_floats(1), b = random_floats(2);
  std::vector<float> out(kN);
  for (auto _ : state) {
    if constexpr (kSimd) rvec::kernels::subtract(a.data(), b.data(), out.data(), kN);
    else rvec::kernels::scalar::subtract(a.data(), b.data(), out.data(), kN);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kN * 12));
}

template <bool kSimd>
void BM_F32ToBf16(benchmark::State& state) {
  const auto a = random_floats(1);
  std::vector<uint16_t> out(kN);
  for (auto _ : state) {
    if constexpr (kSimd) rvec::kernels::f32_to_bf16(a.data(), out.data(), kN);
    else rvec::kernels::scalar::f32_to_bf16(a.data(), out.data(), kN);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kN * 6));
}

template <bool kSimd>
void BM_Bf16ToF32(benchmark::State& state) {
  std::vector<uint16_t> in(kN, 0x3F80);
  std::vector<float> out(kN);
  for (auto _ : state) {
    if constexpr (kSimd) rvec::kernels::bf16_to_f32(in.data(), out.data(), kN);
    else rvec::kernels::scalar::bf16_to_f32(in.data(), out.data(), kN);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kN * 6));
}

// The whole per-block merge step: decode pre/post/target bf16, d = post - pre,
// out = target + w*d, encode bf16. Bytes: 3 inputs + 1 output, bf16.
template <bool kSimd>
void BM_CombineBf16(benchmark::State& state) {
  std::vector<uint16_t> pre(kN), post(kN), target(kN), out(kN);
  rvec::kernels::scalar::f32_to_bf16(random_floats(1).data(), pre.data(), kN);
  rvec::kernels::scalar::f32_to_bf16(random_floats(2).data(), post.data(), kN);
  rvec::kernels::scalar::f32_to_bf16(random_floats(3).data(), target.data(), kN);
  std::vector<float> p(kN), q(kN), t(kN), r(kN);
  for (auto _ : state) {
    if constexpr (kSimd) {
      namespace k = rvec::kernels;
      k::bf16_to_f32(post.data(), p.data(), kN);
      k::bf16_to_f32(pre.data(), q.data(), kN);
      k::bf16_to_f32(target.data(), t.data(), kN);
      k::subtract(p.data(), q.data(), p.data(), kN);
      k::add_scaled(t.data(), 0.5f, p.data(), r.data(), kN);
      k::f32_to_bf16(r.data(), out.data(), kN);
    } else {
      namespace k = rvec::kernels::scalar;
      k::bf16_to_f32(post.data(), p.data(), kN);
      k::bf16_to_f32(pre.data(), q.data(), kN);
      k::bf16_to_f32(target.data(), t.data(), kN);
      k::subtract(p.data(), q.data(), p.data(), kN);
      k::add_scaled(t.data(), 0.5f, p.data(), r.data(), kN);
      k::f32_to_bf16(r.data(), out.data(), kN);
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kN * 8));
  state.SetLabel(kSimd ? rvec::kernels::simd_target() : "scalar");
}

// One matmul task of a 512-token prompt on one core: a block of bf16 weight
// rows (about 256 KiB, as numeric/matmul.cpp cuts them) times every token.
// Counter: GFLOP/s (2 per multiply-add).
void BM_GemmBf16(benchmark::State& state) {
  const size_t cols = static_cast<size_t>(state.range(0)), rows = (256 << 10) / (2 * cols), tokens = 512;
  std::vector<uint16_t> w(rows * cols);
  for (size_t i = 0; i < w.size(); ++i) w[i] = rvec::f32_to_bf16(0.01f * static_cast<float>(i % 97) - 0.5f);
  std::vector<float> x(tokens * cols, 0.25f), y(tokens * rows);
  for (auto _ : state) {
    rvec::linalg::gemm_bf16(w.data(), rows, cols, x.data(), tokens, y.data(), rows);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(static_cast<double>(2 * rows * cols * tokens) * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(BM_GemmBf16)->Name("gemm_bf16/512_tokens")->Arg(896)->Arg(4864);
// Decoding one stream on one core, as the engine's weights are laid out:
// 512 MiB of bf16 rows of 896 columns (twice this machine's L3) in the
// weights' allocation (huge pages), times one activation row; against a plain
// read of the same bytes (one sequential stream through linalg::dot). Bytes
// per second: the weights read; the gap between the two is what the gemv
// kernel leaves of one core's memory bandwidth.
constexpr size_t kStreamBytes = size_t(512) << 20, kStreamCols = 896;

std::vector<uint16_t, rvec::WeightAllocator<uint16_t>>& stream_weights() {
  static std::vector<uint16_t, rvec::WeightAllocator<uint16_t>> w(kStreamBytes / 2, rvec::f32_to_bf16(0.01f));
  return w;
}

void BM_GemvBf16Stream(benchmark::State& state) {
  const auto& w = stream_weights();
  const size_t rows = w.size() / kStreamCols;
  std::vector<float> x(kStreamCols, 0.25f), y(rows);
  for (auto _ : state) {
    rvec::linalg::gemv_bf16(w.data(), rows, kStreamCols, x.data(), 1, y.data(), rows);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * rows * kStreamCols * 2));
}

void BM_ReadStream(benchmark::State& state) {
  const auto& w = stream_weights();
  const auto* data = reinterpret_cast<const float*>(w.data());
  for (auto _ : state) benchmark::DoNotOptimize(rvec::linalg::dot(data, data, w.size() / 2));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * w.size() * 2));
}

BENCHMARK(BM_GemvBf16Stream)->Name("gemv_bf16/one_stream_512MiB")->MinTime(2.0);
BENCHMARK(BM_ReadStream)->Name("read/one_stream_512MiB")->MinTime(2.0);
BENCHMARK(BM_Subtract<true>)->Name("subtract/simd");
BENCHMARK(BM_Subtract<false>)->Name("subtract/scalar");
BENCHMARK(BM_Bf16ToF32<true>)->Name("bf16_to_f32/simd");
BENCHMARK(BM_Bf16ToF32<false>)->Name("bf16_to_f32/scalar");
BENCHMARK(BM_F32ToBf16<true>)->Name("f32_to_bf16/simd");
BENCHMARK(BM_F32ToBf16<false>)->Name("f32_to_bf16/scalar");
BENCHMARK(BM_CombineBf16<true>)->Name("combine_bf16/simd");
BENCHMARK(BM_CombineBf16<false>)->Name("combine_bf16/scalar");

}  // namespace

BENCHMARK_MAIN();
