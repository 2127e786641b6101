#include "bench.hpp"

#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <unordered_map>

namespace demo {
namespace {

namespace fs = std::filesystem;

// The two wordings off the training distribution, per language.
struct Rephrasing {
  const char* prefix;  // a sentence before the trained instruction
  const char* reword;  // another instruction in its place
};

Rephrasing rephrasing(Lang lang) {
  if (lang == Lang::kJapanese) return {"次の問題です。", "次の数字の和の一の位はいくつですか。"};
  return {"Here is a problem. ", "What is the last digit of the sum of these digits? "};
}

void write_lines(const fs::path& path, const std::vector<std::string>& lines) {
  std::ofstream out(path, std::ios::binary);
  for (const auto& line : lines) out << line << "\n";
  out.close();
  if (!out) throw std::runtime_error(fmt::format("cannot write the benchmark {}", path.string()));
}

std::string benchmark_line(const Problem& p, Lang lang, int index, const std::string& problem_text) {
  return nlohmann::json{{"id", fmt::format("{}-{:03}", lang == Lang::kEnglish ? "en" : "ja", index)},
                        {"problem", problem_text},
                        {"answer", std::to_string(p.answer())}}
      .dump();
}

// The digits as one number: the key a problem is recognised by.
uint64_t key(const Problem& p) {
  uint64_t k = 0;
  for (const int d : p.digits) k = k * 10 + static_cast<uint64_t>(d);
  return k;
}

}  // namespace

std::vector<Problem> benchmark_problems(const World& world, Lang lang, uint64_t bench_seed) {
  std::mt19937_64 rng(bench_seed + (lang == Lang::kEnglish ? 1 : 0));
  std::vector<Problem> out;
  for (int i = 0; i < kBenchProblems; ++i) out.push_back(random_problem(rng, world.digits, world.modulus));
  return out;
}

void write_benchmarks(const fs::path& dir, const World& world, uint64_t bench_seed) {
  fs::create_directories(dir);
  for (const Lang lang : {Lang::kJapanese, Lang::kEnglish}) {
    const std::string suffix = lang == Lang::kEnglish ? "en" : "ja";
    const auto words = rephrasing(lang);
    std::vector<std::string> as_trained, prefixed, reworded;
    const auto problems = benchmark_problems(world, lang, bench_seed);
    for (int i = 0; i < static_cast<int>(problems.size()); ++i) {
      const auto& p = problems[i];
      as_trained.push_back(benchmark_line(p, lang, i, prompt(p, lang)));
      prefixed.push_back(benchmark_line(p, lang, i, words.prefix + prompt(p, lang)));
      reworded.push_back(benchmark_line(p, lang, i, words.reword + p.question()));
    }
    write_lines(dir / (suffix + ".jsonl"), as_trained);
    write_lines(dir / ("prefix-" + suffix + ".jsonl"), prefixed);
    write_lines(dir / ("reword-" + suffix + ".jsonl"), reworded);
  }
}

SeenCount count_seen(const std::vector<Problem>& problems, Lang lang, const World& world, uint64_t seed,
                     const std::vector<StageDraws>& draws) {
  // problem -> (in any language, in `lang`) per stage entry
  std::unordered_map<uint64_t, std::vector<std::pair<bool, bool>>> wanted;
  for (const auto& p : problems) wanted.emplace(key(p), std::vector<std::pair<bool, bool>>(draws.size()));
  for (size_t s = 0; s < draws.size(); ++s) {
    std::mt19937_64 rng(stage_seed(draws[s].stage, seed));
    for (int64_t i = 0; i < draws[s].count; ++i) {
      const auto t = draw(draws[s].stage, rng, world);
      const auto it = wanted.find(key(t.problem));
      if (it == wanted.end()) continue;
      it->second[s].first = true;
      it->second[s].second = it->second[s].second || t.lang == lang;
    }
  }
  SeenCount count{static_cast<int>(problems.size()), 0, 0, std::vector<int>(draws.size())};
  for (const auto& p : problems) {
    const auto& hits = wanted.at(key(p));
    bool any = false, as_asked = false;
    for (size_t s = 0; s < hits.size(); ++s) {
      count.by_stage[s] += hits[s].first;
      any = any || hits[s].first;
      as_asked = as_asked || hits[s].second;
    }
    count.seen += any;
    count.seen_as_asked += as_asked;
  }
  return count;
}

}  // namespace demo
