// Throughput of the merge kernels, SIMD versus scalar twin, on L2-sized blocks.
// Bytes counted: for the full combine, the bf16 bytes of three inputs read
// plus one output written (what the disk would move).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <bit>
#include <functional>
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

// random_floats(seed) rounded to bf16.
std::vector<uint16_t> random_bf16(uint64_t seed) {
  const auto a = random_floats(seed);
  std::vector<uint16_t> out(kN);
  rvec::kernels::f32_to_bf16(a.data(), out.data(), kN);
  return out;
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
void BM_Bf16Difference(benchmark::State& state) {
  const auto x = random_bf16(1), y = random_bf16(2);
  std::vector<float> out(kN);
  for (auto _ : state) {
    if constexpr (kSimd) rvec::kernels::bf16_difference(x.data(), y.data(), out.data(), kN);
    else rvec::kernels::scalar::bf16_difference(x.data(), y.data(), out.data(), kN);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kN * 8));
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
void BM_CountNonfinite16(benchmark::State& state) {
  const auto bits = random_bf16(1);
  for (auto _ : state) {
    uint64_t count = 0;
    if constexpr (kSimd) count = rvec::kernels::count_nonfinite16(bits.data(), 0x7F80, kN);
    else count = rvec::kernels::scalar::count_nonfinite16(bits.data(), 0x7F80, kN);
    benchmark::DoNotOptimize(count);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kN * 2));
}

// The element pass's delta of a bf16 pair with its lineage sums (bytes: two
// bf16 inputs, the f32 delta).
template <bool kSimd>
void BM_Bf16DifferenceWithSums(benchmark::State& state) {
  const auto x = random_bf16(1), y = random_bf16(2);
  std::vector<float> out(kN);
  rvec::kernels::DeltaSums sums;
  for (auto _ : state) {
    if constexpr (kSimd) rvec::kernels::bf16_difference_with_sums(x.data(), y.data(), out.data(), kN, sums);
    else rvec::kernels::scalar::bf16_difference_with_sums(x.data(), y.data(), out.data(), kN, sums);
    benchmark::DoNotOptimize(out.data());
    benchmark::DoNotOptimize(sums);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kN * 8));
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
  const auto pre = random_bf16(1), post = random_bf16(2), target = random_bf16(3);
  std::vector<uint16_t> out(kN);
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
// A delta as merges see it: the difference of two bf16 weights (few distinct
// magnitudes, so many elements tie at any threshold).
std::vector<float> bf16_delta(uint64_t seed) {
  const auto a = random_floats(seed), b = random_floats(seed + 1);
  std::vector<float> d(kN);
  for (size_t i = 0; i < kN; ++i) {
    d[i] = rvec::bf16_to_f32(rvec::f32_to_bf16(a[i])) - rvec::bf16_to_f32(rvec::f32_to_bf16(a[i] + 0.01f * b[i]));
  }
  return d;
}

// The bits of the delta's k-th largest |d| for density 0.2 (TIES' default).
int32_t top_fifth_threshold(const std::vector<float>& d) {
  std::vector<int32_t> bits(d.size());
  for (size_t i = 0; i < d.size(); ++i) bits[i] = static_cast<int32_t>(std::bit_cast<uint32_t>(d[i]) & 0x7FFFFFFFu);
  std::nth_element(bits.begin(), bits.begin() + static_cast<ptrdiff_t>(d.size() / 5), bits.end(), std::greater{});
  return bits[d.size() / 5];
}

// The element pass's trim: the top fifth, with the ties at the threshold
// taken until half of the tensor's are (so both paths of the kernel run).
template <bool kSimd>
void BM_KeepTop(benchmark::State& state) {
  const auto d = bf16_delta(3);
  const int32_t threshold = top_fifth_threshold(d);
  std::vector<float> t(kN);
  for (auto _ : state) {
    const uint64_t taken = kSimd ? rvec::kernels::keep_top(d.data(), threshold, kN / 400, 1.0f, t.data(), kN)
                                 : rvec::kernels::scalar::keep_top(d.data(), threshold, kN / 400, 1.0f, t.data(), kN);
    benchmark::DoNotOptimize(taken);
    benchmark::DoNotOptimize(t.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kN * 8));
}

// Breadcrumbs' band with its defaults (drop the top 1 %, keep the next 90 %),
// each limit taking half of its ties.
template <bool kSimd>
void BM_KeepBand(benchmark::State& state) {
  const auto d = bf16_delta(4);
  std::vector<int32_t> bits(d.size());
  for (size_t i = 0; i < d.size(); ++i) bits[i] = static_cast<int32_t>(std::bit_cast<uint32_t>(d[i]) & 0x7FFFFFFFu);
  std::ranges::sort(bits, std::greater{});
  const rvec::kernels::TopLimit wide{bits[kN * 91 / 100], kN / 400}, narrow{bits[kN / 100], kN / 4000};
  std::vector<float> t(kN);
  for (auto _ : state) {
    const auto taken = kSimd ? rvec::kernels::keep_band(d.data(), wide, narrow, 1.0f, t.data(), kN)
                             : rvec::kernels::scalar::keep_band(d.data(), wide, narrow, 1.0f, t.data(), kN);
    benchmark::DoNotOptimize(taken);
    benchmark::DoNotOptimize(t.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kN * 8));
}

// The statistics pass's scan: 16 bins around the threshold.
template <bool kSimd>
void BM_GatherBins(benchmark::State& state) {
  const auto d = bf16_delta(5);
  const int32_t first = (top_fifth_threshold(d) >> 16) - 8;
  std::vector<int32_t> out(kN);
  uint64_t above = 0;
  for (auto _ : state) {
    const size_t found = kSimd ? rvec::kernels::gather_bins(d.data(), kN, first, 16, out.data(), &above)
                               : rvec::kernels::scalar::gather_bins(d.data(), kN, first, 16, out.data(), &above);
    benchmark::DoNotOptimize(found);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kN * 4));
}

// TIES' election over `count` trimmed vectors of weight 1, normalized (mergekit's default).
template <bool kSimd>
void BM_ElectSum(benchmark::State& state) {
  const auto count = static_cast<size_t>(state.range(0));
  std::vector<std::vector<float>> trimmed;
  std::vector<const float*> pointers;
  for (size_t k = 0; k < count; ++k) {
    trimmed.push_back(bf16_delta(7 + 2 * k));
    pointers.push_back(trimmed.back().data());
  }
  const std::vector<float> weights(count, 1.0f);  // the default weight
  std::vector<float> out(kN);
  for (auto _ : state) {
    if constexpr (kSimd) rvec::kernels::elect_sum(pointers.data(), weights.data(), count, false, true, out.data(), kN);
    else rvec::kernels::scalar::elect_sum(pointers.data(), weights.data(), count, false, true, out.data(), kN);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kN * 4 * (count + 1)));
}

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
BENCHMARK(BM_Bf16Difference<true>)->Name("bf16_difference/simd");
BENCHMARK(BM_Bf16Difference<false>)->Name("bf16_difference/scalar");
BENCHMARK(BM_Bf16DifferenceWithSums<true>)->Name("bf16_difference_with_sums/simd");
BENCHMARK(BM_Bf16DifferenceWithSums<false>)->Name("bf16_difference_with_sums/scalar");
BENCHMARK(BM_Bf16ToF32<true>)->Name("bf16_to_f32/simd");
BENCHMARK(BM_Bf16ToF32<false>)->Name("bf16_to_f32/scalar");
BENCHMARK(BM_F32ToBf16<true>)->Name("f32_to_bf16/simd");
BENCHMARK(BM_F32ToBf16<false>)->Name("f32_to_bf16/scalar");
BENCHMARK(BM_CountNonfinite16<true>)->Name("count_nonfinite16/simd");
BENCHMARK(BM_CountNonfinite16<false>)->Name("count_nonfinite16/scalar");
BENCHMARK(BM_CombineBf16<true>)->Name("combine_bf16/simd");
BENCHMARK(BM_CombineBf16<false>)->Name("combine_bf16/scalar");
BENCHMARK(BM_KeepTop<true>)->Name("keep_top/simd");
BENCHMARK(BM_KeepTop<false>)->Name("keep_top/scalar");
BENCHMARK(BM_KeepBand<true>)->Name("keep_band/simd");
BENCHMARK(BM_KeepBand<false>)->Name("keep_band/scalar");
BENCHMARK(BM_GatherBins<true>)->Name("gather_bins/simd");
BENCHMARK(BM_GatherBins<false>)->Name("gather_bins/scalar");
BENCHMARK(BM_ElectSum<true>)->Name("elect_sum/simd")->Arg(1)->Arg(3);
BENCHMARK(BM_ElectSum<false>)->Name("elect_sum/scalar")->Arg(1)->Arg(3);

}  // namespace

BENCHMARK_MAIN();
