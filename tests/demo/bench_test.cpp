// The demo's benchmarks (demo/bench) as the trainer writes them, and how many
// of their problems the shipped family's training data held (docs/demo.md).
// demo/train/bench.cpp and world.cpp need no LibTorch, so these run in every build.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "demo/train/bench.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

namespace fs = std::filesystem;

const char* const kBenchmarks[] = {"ja", "en", "prefix-ja", "prefix-en", "reword-ja", "reword-en"};

std::vector<nlohmann::json> lines(const fs::path& path) {
  std::vector<nlohmann::json> out;
  std::istringstream in(test::read_file(path));
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(DemoBench, TheDefaultSeedWritesDemoBenchByteForByte) {
  test::TempDir dir;
  demo::write_benchmarks(dir.path(), demo::World{}, demo::kBenchSeed);
  for (const std::string name : kBenchmarks) {
    const auto shipped = test::read_file(test::source_dir() / "demo" / "bench" / (name + ".jsonl"));
    EXPECT_EQ(test::read_file(dir / (name + ".jsonl")), shipped) << name;
  }
}

// A problem's six digits, "3 6 4 7 2 6": how every wording ends.
std::string digits(const nlohmann::json& line) {
  const std::string problem = line["problem"];
  return problem.substr(problem.size() - 11);
}

// What a wording puts before `tail` (the problem as trained, or its digits).
std::string words_before(const nlohmann::json& line, const std::string& tail) {
  const std::string problem = line["problem"];
  EXPECT_TRUE(problem.ends_with(tail)) << problem;
  return problem.substr(0, problem.size() - tail.size());
}

// A fresh seed: other problems, asked in the same words as demo/bench, with
// the same ids and answers in all three wordings of a language.
TEST(DemoBench, AnotherSeedAsksOtherProblemsInTheSameWords) {
  test::TempDir fresh;
  demo::write_benchmarks(fresh.path(), demo::World{}, 7);
  const fs::path shipped = test::source_dir() / "demo" / "bench";
  for (const std::string lang : {"ja", "en"}) {
    const auto as_trained = lines(fresh / (lang + ".jsonl"));
    const auto prefixed = lines(fresh / ("prefix-" + lang + ".jsonl"));
    const auto reworded = lines(fresh / ("reword-" + lang + ".jsonl"));
    const auto shipped_as_trained = lines(shipped / (lang + ".jsonl"));
    const auto shipped_prefix = words_before(lines(shipped / ("prefix-" + lang + ".jsonl"))[0], shipped_as_trained[0]["problem"]);
    const auto shipped_reword = words_before(lines(shipped / ("reword-" + lang + ".jsonl"))[0], digits(shipped_as_trained[0]));
    const auto shipped_instruction = words_before(shipped_as_trained[0], digits(shipped_as_trained[0]));
    ASSERT_EQ(as_trained.size(), 200u);
    ASSERT_EQ(prefixed.size(), 200u);
    ASSERT_EQ(reworded.size(), 200u);
    int same_problems = 0;
    for (size_t i = 0; i < 200; ++i) {
      const std::string problem = as_trained[i]["problem"];
      same_problems += problem == shipped_as_trained[i]["problem"];
      EXPECT_EQ(words_before(as_trained[i], digits(as_trained[i])), shipped_instruction);
      EXPECT_EQ(words_before(prefixed[i], problem), shipped_prefix);
      EXPECT_EQ(words_before(reworded[i], digits(as_trained[i])), shipped_reword);
      for (const auto* other : {&prefixed[i], &reworded[i]}) {
        EXPECT_EQ((*other)["id"], shipped_as_trained[i]["id"]);
        EXPECT_EQ((*other)["answer"], as_trained[i]["answer"]);
      }
    }
    EXPECT_LT(same_problems, 5) << lang;
  }
}

// docs/demo.md's count: the problems of demo/bench that the shipped family's
// training data (base, pre, post, control, target, closing with the default
// steps, every stage in four phrasings: rvec_train_demo --seed 1 --phrasings 4)
// held, found by replaying the trainer's own draws.
TEST(DemoBench, TheShippedFamilySawTwentyOneJapaneseAndTwentyFourEnglishProblems) {
  std::vector<demo::StageDraws> shipped;
  for (const demo::Stage stage : demo::kStages) shipped.push_back({stage, (stage == demo::Stage::kBase ? 3000 : 150) * 32});
  demo::World world;
  world.phrasings = 4;
  const auto ja = demo::count_seen(demo::benchmark_problems(world, demo::Lang::kJapanese, demo::kBenchSeed),
                                   demo::Lang::kJapanese, world, 1, shipped);
  const auto en = demo::count_seen(demo::benchmark_problems(world, demo::Lang::kEnglish, demo::kBenchSeed),
                                   demo::Lang::kEnglish, world, 1, shipped);
  EXPECT_EQ(ja.problems, 200);
  EXPECT_EQ(ja.seen, 21);
  EXPECT_EQ(ja.seen_as_asked, 9);
  EXPECT_EQ(ja.by_stage, (std::vector<int>{17, 0, 0, 4, 0, 0}));
  EXPECT_EQ(en.seen, 24);
  EXPECT_EQ(en.seen_as_asked, 12);
  EXPECT_EQ(en.by_stage, (std::vector<int>{18, 0, 0, 3, 3, 0}));
}

}  // namespace
}  // namespace rvec
