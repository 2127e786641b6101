// The demo's benchmarks (demo/bench) and how many of their problems a
// training run saw. Free of LibTorch: the trainer writes them
// (rvec_train_demo --bench-only, --count-seen) and rvec_tests checks them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "world.hpp"

namespace demo {

// The seed of the shipped benchmarks: ja.jsonl draws from it, en.jsonl from
// the next one. The world was designed and tuned on these problems.
inline constexpr uint64_t kBenchSeed = 2026;
inline constexpr int kBenchProblems = 200;

// The problems of a benchmark in `lang` drawn from `bench_seed` (its ja seed).
std::vector<Problem> benchmark_problems(const World& world, Lang lang, uint64_t bench_seed);

// Writes the six benchmarks into `dir`, the same 200 problems per language in
// three wordings: ja.jsonl and en.jsonl ask them as the family was trained
// to; prefix-*.jsonl put a sentence before that instruction and reword-*.jsonl
// use another instruction (off the training distribution). With kBenchSeed
// these are demo/bench's files, byte for byte. Throws std::runtime_error
// naming the file it could not write.
void write_benchmarks(const std::filesystem::path& dir, const World& world, uint64_t bench_seed);

// How many training transcripts each stage draws.
struct StageDraws {
  Stage stage;
  int64_t count = 0;
};

// How many of a benchmark's problems a run's training data held (the same
// digits, in any language and style), counted by replaying each stage's draws.
struct SeenCount {
  int problems = 0;
  int seen = 0;                // in any stage, any language
  int seen_as_asked = 0;       // in the benchmark's own language (its exact prompt, with phrasings 1)
  std::vector<int> by_stage;   // per entry of the draws given, any language
};

SeenCount count_seen(const std::vector<Problem>& problems, Lang lang, const World& world, uint64_t seed,
                     const std::vector<StageDraws>& draws);

}  // namespace demo
