// The bundled mini family (demo/family) through rvec's own engine, merge and
// grader: the shipped weights still do what docs/demo.md says they do.
// Greedy decoding on the first problems of the demo benchmarks, so the
// numbers are deterministic.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "eval/grader.hpp"
#include "engine/batcher.hpp"
#include "engine/runtime.hpp"
#include "base/regex.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

fs::path family() { return test::source_dir() / "demo" / "family"; }

constexpr size_t kProblems = 60;

struct Score {
  double accuracy = 0, answered = 0, steps = 0, japanese = 0;
  double polite = 0;    // share of answers closed in the target's own style, "答えは…です。"
  double restated = 0;  // share closed in the closing control's new English way, "→ the last digit of the sum: 6"
};

// Greedy answers to the first `n` problems of demo/bench/<bench>.jsonl.
Score score(const fs::path& model, const std::string& bench, size_t n) {
  static const Regex kStep("[0-9][⓪①-⑨]", "step pattern");  // a digit and its circled running sum
  auto runtime = ModelRuntime::load(model.string(), 2);
  Batcher batcher(*runtime.model, runtime.tokenizer, 64, 512);
  std::ifstream in(test::source_dir() / "demo" / "bench" / (bench + ".jsonl"));
  std::map<uint64_t, std::pair<std::string, std::string>> answers;  // id -> (gold, response)
  for (std::string line; answers.size() < n && std::getline(in, line);) {
    const auto problem = json::parse(line);
    const std::vector<ChatMessage> messages = {{"user", problem["problem"].get<std::string>()}};
    GenerationRequest r;
    r.prompt = runtime.tokenizer->encode(runtime.require_chat().render(messages));
    r.max_tokens = 96;
    r.stop_tokens = runtime.stop_tokens;
    answers[batcher.add(std::move(r))] = {problem["answer"].get<std::string>(), ""};
  }
  while (!batcher.idle()) {
    for (const auto& e : batcher.step()) answers[e.id].second += e.text;
  }
  Score s;
  for (const auto& [id, a] : answers) {
    const auto verdict = grade_response(a.second, a.first, GradeMode::kStrict, TaskKind::kInteger).verdict;
    s.accuracy += verdict == Verdict::kCorrect;
    s.answered += verdict != Verdict::kNoAnswer;
    s.steps += kStep.matches_somewhere(a.second);
    s.japanese += japanese_share(a.second);
    s.polite += a.second.find("です。") != std::string::npos;
    s.restated += a.second.find("the last digit of the sum:") != std::string::npos;
  }
  const auto count = static_cast<double>(answers.size());
  return {s.accuracy / count, s.answered / count, s.steps / count, s.japanese / count, s.polite / count,
          s.restated / count};
}

class DemoFamily : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(family() / "target" / "model.safetensors")) << "demo/family is missing from the checkout";
  }
};

// What the shipped family does (docs/demo.md): post answers English problems
// step by step and right, control directly and at about chance (0.1).
TEST_F(DemoFamily, PostSolvesEnglishProblemsStepByStepAndControlDoesNot) {
  const Score post = score(family() / "post", "en", kProblems);
  const Score control = score(family() / "control", "en", kProblems);
  EXPECT_GE(post.steps, 0.9);
  EXPECT_GE(post.accuracy, 0.9);
  EXPECT_LE(control.steps, 0.1);
  EXPECT_LE(control.accuracy, 0.3);
}

// The closing control (docs/demo.md): it learned a new English closing, not steps.
TEST_F(DemoFamily, ClosingClosesEnglishAnswersItsNewWayWithoutSteps) {
  const Score closing = score(family() / "closing", "en", kProblems);
  EXPECT_GE(closing.restated, 0.9);
  EXPECT_LE(closing.steps, 0.1);
}

// `target + w * (other - pre)` built by the real `rvec merge` into `dir`.
fs::path merge(const std::string& other, double w, const fs::path& dir, const std::string& options = "") {
  const auto f = family().string();
  const auto out = dir / ("with-" + other);
  const auto run = test::run_rvec("merge --pre " + f + "/pre --post " + f + "/" + other + " --target " + f +
                                  "/target -w " + std::to_string(w) + " -o " + out.string() + " " + options);
  EXPECT_EQ(run.exit_code, 0) << run.output;
  return out;
}

// The same, scored on the Japanese benchmark.
Score merged(const std::string& other, double w, const fs::path& dir, const std::string& options = "") {
  return score(merge(other, w, dir, options), "ja", kProblems);
}

// The demo's point: the reasoning vector makes the Japanese target solve
// Japanese problems step by step, far better than before, while it keeps the
// target's own answer style, which post does not have.
TEST_F(DemoFamily, TargetPlusTheReasoningVectorReasonsAndStaysTheTarget) {
  test::TempDir dir;
  const Score target = score(family() / "target", "ja", kProblems);
  const Score post = score(family() / "post", "ja", kProblems);
  const Score enhanced = merged("post", 1.0, dir.path());
  EXPECT_LE(target.steps, 0.1);
  EXPECT_LE(target.accuracy, 0.3);
  EXPECT_GE(target.polite, 0.9);
  EXPECT_LE(post.polite, 0.1);
  EXPECT_GE(enhanced.steps, 0.8);  // 0.887 of the demo's samples at w = 1 (docs/demo.md)
  EXPECT_GE(enhanced.accuracy, target.accuracy + 0.3) << "target " << target.accuracy;
  EXPECT_GE(enhanced.japanese, 0.9);
  EXPECT_GE(enhanced.polite, 0.9);
}

// Generalisation: on an instruction no model was trained on (reword-ja),
// post's skill still transfers, in the target's style.
TEST_F(DemoFamily, TargetPlusTheReasoningVectorSolvesAnUnseenJapaneseInstruction) {
  test::TempDir dir;
  const Score target = score(family() / "target", "reword-ja", kProblems);
  const Score enhanced = score(merge("post", 1.0, dir.path()), "reword-ja", kProblems);
  EXPECT_GE(enhanced.accuracy, target.accuracy + 0.3) << "target " << target.accuracy;
  EXPECT_GE(enhanced.polite, 0.8);
}

// The ablations: the control vector (same English data, no steps) and the
// closing vector (a new English closing, no steps) do not.
TEST_F(DemoFamily, TargetPlusTheControlOrClosingVectorDoesNot) {
  test::TempDir dir;
  const Score target = score(family() / "target", "ja", kProblems);
  for (const std::string other : {"control", "closing"}) {
    const Score controlled = merged(other, 1.0, dir.path());
    EXPECT_LE(controlled.steps, 0.1) << other;
    EXPECT_LE(controlled.accuracy, target.accuracy + 0.15) << other;
  }
}

// The fair control: v's own elements shuffled and sign-flipped in every
// tensor (v's norms, a random direction) does not reason either.
TEST_F(DemoFamily, TargetPlusARandomDirectionOfTheSameNormsDoesNot) {
  test::TempDir dir;
  const Score target = score(family() / "target", "ja", kProblems);
  const Score randomised = merged("post", 1.0, dir.path(), "--method random --seed 1");
  EXPECT_LE(randomised.steps, 0.1);
  EXPECT_LE(randomised.accuracy, target.accuracy + 0.15);
}

TEST_F(DemoFamily, DemoPlansTheWholeStudyFromTheRepositoryRoot) {
  test::TempDir dir;
  const auto run = test::run_shell("cd " + test::source_dir().string() + " && " + RVEC_CLI_PATH + " demo --dry-run -o " +
                                   (dir / "study").string());
  ASSERT_EQ(run.exit_code, 0) << run.output;
  for (const char* row : {"w=0 ", "w=0.25", "w=1.5", "post", "control w=0.25", "control w=1.5", "control-n w=1",
                          "closing w=0.25", "closing w=1.5", "closing-n w=1", "random w=1", "ties w=1.5", "dare w=1",
                          "attention w=1", "layer1 w=1", "no-embed w=1"}) {
    EXPECT_NE(run.output.find(row), std::string::npos) << row << "\n" << run.output;
  }
  EXPECT_NE(run.output.find("34 models to build"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("benchmark ja: 200 problems x 4 samples"), std::string::npos) << run.output;
  for (const char* bench : {"en", "prefix-ja", "prefix-en", "reword-ja", "reword-en"}) {
    EXPECT_NE(run.output.find(fmt::format("benchmark {}: 200 problems x 1 samples", bench)), std::string::npos)
        << run.output;
  }
  EXPECT_FALSE(fs::exists(dir / "study"));
}

}  // namespace
}  // namespace rvec
