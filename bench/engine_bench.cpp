// Decode and prompt throughput of the built-in engine against the memory
// bandwidth floor, measured in one run on the same machine:
//
//   floor (s/step) = bytes of weights one decode step streams / R(T)
//
// where R(T) is the read bandwidth of T threads reading the way a decode
// step reads its weights: a 1 GiB buffer (about 4x this machine's L3) in the
// weights' own allocation (2 MiB-aligned, madvise(MADV_HUGEPAGE)), split into
// T contiguous parts, one long sequential stream per thread with 64-byte
// vector loads; the best of 10 passes, half of them with software prefetches
// 8 KiB ahead as the gemv kernels make. (memcpy bandwidth is printed too; the
// floor uses the read rate because a decode step only reads weights.)
//
// Usage: rvec_engine_bench MODEL_DIR [threads] [all|prompt|decode|decode1|floor|compare]
// (decode1: one stream only, 64 tokens; floor: the bandwidths and the floor only; compare: one JSON line with the three
// rates of bench/engine_vs_llamacpp.sh)
// (make a model with: rvec gen-family 0.5b OUT, then use OUT/pre)
#include <fmt/format.h>

#include <sys/resource.h>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "base/thread_pool.hpp"
#include "engine/batcher.hpp"
#include "engine/transformer.hpp"
#include "numeric/linalg.hpp"
#include "numeric/matmul.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using rvec::TokenId;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// CPU seconds this process has used (all threads, user + system): on a
// shared machine, tokens per CPU second compare builds even when other work
// takes some of the cores.
double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + 1e-6 * static_cast<double>(t.tv_usec); };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

struct Rate {
  double per_second, per_cpu_second;
};

// STREAM-style copy bandwidth over 1 GiB with every thread: (read + write) bytes / s.
double copy_bandwidth(rvec::ThreadPool& pool) {
  const size_t bytes = size_t(1) << 30, parts = pool.size();
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  double best = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    const auto start = Clock::now();
    pool.parallel_for(parts, [&](size_t p) {
      const size_t chunk = bytes / parts;
      std::memcpy(dst.data() + p * chunk, src.data() + p * chunk, chunk);
    });
    best = std::min(best, seconds_since(start));
  }
  return 2.0 * static_cast<double>(bytes) / best;
}

// Sum of p[0, count) squared, read in 4 KiB blocks; with `prefetch`, each
// block 8 KiB ahead is prefetched first, as the gemv kernels do.
float read_stream(const float* p, size_t count, bool prefetch) {
  constexpr size_t kBlock = 1024, kAhead = 2 * kBlock, kLine = 16;
  float sum = 0;
  for (size_t at = 0; at < count; at += kBlock) {
    for (size_t i = at + kAhead; prefetch && i < std::min(at + kAhead + kBlock, count); i += kLine) __builtin_prefetch(p + i);
    sum += rvec::linalg::dot(p + at, p + at, std::min(kBlock, count - at));
  }
  return sum;
}

// R(threads): bytes read per second, as the floor above describes: the better
// of reading with the hardware's prefetchers alone and with software
// prefetches too.
double read_bandwidth(rvec::ThreadPool& pool) {
  const size_t floats = size_t(1) << 28, parts = pool.size(), chunk = floats / parts;
  std::vector<float, rvec::WeightAllocator<float>> data(floats, 1.0f);
  std::vector<float> sums(parts);
  double best = 1e30;
  for (int rep = 0; rep < 10; ++rep) {
    const auto start = Clock::now();
    pool.parallel_for(parts, [&](size_t p) { sums[p] = read_stream(data.data() + p * chunk, chunk, rep % 2 == 1); });
    best = std::min(best, seconds_since(start));
  }
  return 4.0 * static_cast<double>(chunk * parts) / best;
}

// Greedy decoding of `batch` sequences (prompts of 16 ids, 100 + 37 i + t),
// up to `tokens` new tokens each. Without the prefill, the first step (the
// prompts and each sequence's first token) is neither timed nor counted.
Rate decode_rate(rvec::Transformer& model, size_t batch, size_t tokens, bool with_prefill) {
  rvec::Batcher batcher(model, nullptr, batch, 4096);
  for (size_t i = 0; i < batch; ++i) {
    rvec::GenerationRequest r;
    for (int t = 0; t < 16; ++t) r.prompt.push_back(static_cast<TokenId>(100 + 37 * i + t));
    r.max_tokens = tokens;
    batcher.add(std::move(r));
  }
  if (!with_prefill) batcher.step();
  const auto start = Clock::now();
  const double cpu_start = cpu_seconds();
  size_t done = 0;
  while (!batcher.idle()) done += batcher.step().size();
  const double count = static_cast<double>(done);
  return {count / seconds_since(start), count / (cpu_seconds() - cpu_start)};
}

Rate prompt_rate(rvec::Transformer& model, size_t length) {
  rvec::KvCache cache = model.new_cache();
  std::vector<TokenId> prompt;
  for (size_t t = 0; t < length; ++t) prompt.push_back(static_cast<TokenId>(1000 + t));
  std::vector<float> logits;
  const rvec::ForwardItem item{&cache, prompt};
  const auto start = Clock::now();
  const double cpu_start = cpu_seconds();
  model.forward(std::span(&item, 1), logits);
  const double tokens = static_cast<double>(length);
  return {tokens / seconds_since(start), tokens / (cpu_seconds() - cpu_start)};
}

void print_prompt_rate(rvec::Transformer& model) {
  const Rate rate = prompt_rate(model, 512);
  fmt::print("prompt processing, 512 tokens: {:.1f} tok/s ({:.1f} tok per CPU second)\n", rate.per_second,
             rate.per_cpu_second);
}

// Prints the bandwidths and the floor; returns the floor in seconds per step.
double print_floor(rvec::ThreadPool& pool, const rvec::Transformer& model) {
  const double copy = copy_bandwidth(pool), read = read_bandwidth(pool);
  const double weights = static_cast<double>(model.weight_bytes());
  fmt::print("threads {}  weights streamed per step {:.3f} GB\n", pool.size(), weights / 1e9);
  fmt::print("memcpy {:.1f} GB/s read+written ({:.1f} GB/s copied); read R({}) {:.1f} GB/s\n", copy / 1e9, copy / 2e9,
             pool.size(), read / 1e9);
  fmt::print("floor = weights / R({}) = {:.1f} ms/step = {:.1f} tok/s for one stream\n", pool.size(),
             weights / read * 1e3, read / weights);
  return weights / read;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string what = argc > 3 ? argv[3] : "all";
  if (argc < 2 || (what != "all" && what != "prompt" && what != "decode" && what != "decode1" &&
                    what != "floor" && what != "compare")) {
    fmt::print(stderr, "usage: rvec_engine_bench MODEL_DIR [threads] [all|prompt|decode|decode1|floor|compare]\n");
    return 2;
  }
  try {
    rvec::ThreadPool pool(argc > 2 ? std::stoul(argv[2]) : rvec::default_thread_count());
    auto model = rvec::Transformer::load(argv[1], pool);
    if (what == "compare") {  // the rates bench/llamacpp_bench.mjs measures for llama.cpp
      const double decode1 = decode_rate(*model, 1, 64, false).per_second;
      const double prompt512 = prompt_rate(*model, 512).per_second;
      const double decode8 = decode_rate(*model, 8, 32, true).per_second;
      fmt::print("{{\"decode1\": {:.3f}, \"prompt512\": {:.3f}, \"decode8\": {:.3f}}}\n", decode1, prompt512, decode8);
      return 0;
    }
    if (what == "decode1") {
      const Rate rate = decode_rate(*model, 1, 64, false);
      fmt::print("threads {}  one stream: {:.2f} tok/s ({:.2f} tok per CPU second)\n", pool.size(), rate.per_second,
                 rate.per_cpu_second);
      return 0;
    }
    if (what == "prompt") {
      fmt::print("threads {}  ", pool.size());
      print_prompt_rate(*model);
      return 0;
    }
    const double floor_s = print_floor(pool, *model);
    if (what == "floor") return 0;
    fmt::print("{:>6} {:>10} {:>12} {:>14} {:>10} {:>14}\n", "batch", "tok/s", "ms/step", "floor tok/s", "vs floor",
               "tok/CPU s");
    for (const size_t batch : {1, 8, 32}) {
      const Rate rate = decode_rate(*model, batch, batch == 1 ? 17 : 9, false);
      const double step_ms = 1e3 * static_cast<double>(batch) / rate.per_second;
      const double floor_rate = static_cast<double>(batch) / floor_s;
      fmt::print("{:>6} {:>10.1f} {:>12.1f} {:>14.1f} {:>9.2f}x {:>14.1f}\n", batch, rate.per_second, step_ms,
                 floor_rate, step_ms / (floor_s * 1e3), rate.per_cpu_second);
    }
    if (what == "all") print_prompt_rate(*model);
  } catch (const rvec::Error& e) {
    fmt::print(stderr, "rvec_engine_bench: error: {}\n", e.what());
    return 1;
  }
  return 0;
}
