#include "eval/grader.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.hpp"

namespace rvec {
namespace {

// grader_cases.jsonl: realistic responses, each with the verdict every mode
// must give, a one-line reason, and for some the strict mode's extracted
// answer and rule.
TEST(Grader, TableOfResponsesGetsTheExpectedVerdictInEveryMode) {
  std::ifstream in(test::source_dir() / "tests" / "eval" / "grader_cases.jsonl");
  size_t line_number = 0, cases = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_number;
    const auto c = nlohmann::json::parse(line);
    const auto response = c["response"].get<std::string>(), gold = c["gold"].get<std::string>();
    const auto kind = c.value("kind", "integer") == "choice" ? TaskKind::kChoice : TaskKind::kInteger;
    const auto where = [&](const Grade& g) {
      return fmt::format("line {} ({}): {} gold {}; extracted {} by {}", line_number, c.value("reason", ""),
                         nlohmann::json(response).dump(), gold, g.extracted.value_or("-"), g.rule);
    };
    EXPECT_FALSE(c.value("reason", "").empty()) << "line " << line_number << " has no reason";
    for (const char* mode : {"strict", "lenient", "substring"}) {
      const auto grade = grade_response(response, gold, *parse_grade_mode(mode), kind);
      EXPECT_EQ(verdict_name(grade.verdict), c[mode].get<std::string>()) << "mode " << mode << ", " << where(grade);
    }
    const auto strict = grade_response(response, gold, GradeMode::kStrict, kind);
    if (c.contains("extracted")) {
      EXPECT_EQ(strict.extracted.value_or("-"), c["extracted"]) << where(strict);
    }
    if (c.contains("rule")) {
      EXPECT_EQ(strict.rule, c["rule"]) << where(strict);
    }
    ++cases;
  }
  EXPECT_GE(cases, 190u);
}

TEST(Grader, RecordsWhichRuleFired) {
  const auto rule = [](std::string_view response, GradeMode mode = GradeMode::kStrict,
                       TaskKind kind = TaskKind::kInteger) { return grade_response(response, "3", mode, kind).rule; };
  EXPECT_EQ(rule("\\boxed{3}"), "boxed");
  EXPECT_EQ(rule("The final answer is $3$. I hope it is correct."), "minerva");
  EXPECT_EQ(rule("Final answer: 3"), "final_answer");
  EXPECT_EQ(rule("答え：3"), "answer_colon");
  EXPECT_EQ(rule("the answer is 3"), "answer_is");
  EXPECT_EQ(rule("so 3", GradeMode::kLenient), "last_number");
  EXPECT_EQ(rule("so B", GradeMode::kLenient, TaskKind::kChoice), "last_letter");
  EXPECT_EQ(rule("so 3"), "none");
  EXPECT_EQ(rule("so 3", GradeMode::kSubstring), "substring");
  EXPECT_EQ(grade_response("\\boxed{007}", "7", GradeMode::kStrict, TaskKind::kInteger).extracted, "7");
}

TEST(Grader, IntegerAnswersParseAfterCleaning) {
  EXPECT_EQ(parse_integer_answer("025"), 25);
  EXPECT_EQ(parse_integer_answer("1,000"), 1000);
  EXPECT_EQ(parse_integer_answer("1\\,000"), 1000);
  EXPECT_EQ(parse_integer_answer("１２"), 12);
  EXPECT_EQ(parse_integer_answer("九百九十九"), 999);
  EXPECT_EQ(parse_integer_answer("−7"), -7);
  EXPECT_EQ(parse_integer_answer("$25$ 個"), 25);
  EXPECT_EQ(parse_integer_answer("\\frac{12}{3}"), 4);
  EXPECT_EQ(parse_integer_answer("2.5"), std::nullopt);
  EXPECT_EQ(parse_integer_answer("\\frac{1}{2}"), std::nullopt);
  EXPECT_EQ(parse_integer_answer("abc"), std::nullopt);
}

// A long response is searched in windows (grader.cpp): a phrase is found at
// any offset, across any window boundary, and the last of many still wins.
TEST(Grader, LongResponsesAreReadAtEveryOffset) {
  std::string reasoning;
  while (reasoning.size() < 24000) reasoning += "計算を続ける: 12 + 30 = 42, ";
  for (size_t at = 0; at < reasoning.size(); at += 89) {
    while ((static_cast<unsigned char>(reasoning[at]) & 0xC0) == 0x80) --at;  // a character boundary
    const std::string head = reasoning.substr(0, at), tail = reasoning.substr(at);
    const auto minerva = grade_response(head + "Final Answer: The final answer is $7$. I hope it is correct. " + tail,
                                        "7", GradeMode::kStrict, TaskKind::kInteger);
    EXPECT_EQ(minerva.rule, "minerva") << "at " << at;
    EXPECT_EQ(minerva.extracted, "7") << "at " << at;
    const auto last = grade_response(head + "答えは 7 です。" + tail, "7", GradeMode::kStrict, TaskKind::kInteger);
    EXPECT_EQ(last.extracted, "7") << "at " << at;
  }
  std::string repeated;
  while (repeated.size() < 60000) repeated += "答えは 6 です。";
  EXPECT_EQ(grade_response(repeated + "答えは 7 です。", "7", GradeMode::kStrict, TaskKind::kInteger).verdict,
            Verdict::kCorrect);
  std::string words;
  while (words.size() < 60000) words += "and so on ";
  EXPECT_EQ(grade_response(reasoning + " 7 " + words, "7", GradeMode::kLenient, TaskKind::kInteger).extracted, "7");
  EXPECT_EQ(grade_response("(B) " + words, "B", GradeMode::kLenient, TaskKind::kChoice).extracted, "B");
}

// Text stitched from the pieces the rules look for, plus arbitrary bytes
// (ill-formed UTF-8 included): every mode gives one of its verdicts, and an
// extracted answer whenever it is not no_answer.
RC_GTEST_PROP(Grader, AnyTextGetsAVerdict, ()) {
  static const std::vector<std::string> kPieces = {
      "\\boxed{", "}", "{", "\\fbox", "答えは", "答え：", "Answer:", "the answer is", "final answer is", "I hope",
      "です", "。", ".", " ", "\n", "$", "$$", "\\(", "\\)", "\\[", "\\]", "=", "+", "-", "1", "25", "1,000",
      "\\,", "{,}", "**", "\\frac{12}{3}", "\\text{", "一", "二十五", "の位", "個", "「", "」", "</think>", "B",
      "１２", "\xff", "\xe3\x81"};
  const auto pieces = *rc::gen::container<std::vector<size_t>>(rc::gen::inRange<size_t>(0, kPieces.size()));
  std::string response;
  for (const size_t piece : pieces) response += kPieces[piece];
  response += *rc::gen::arbitrary<std::string>();
  for (const auto kind : {TaskKind::kInteger, TaskKind::kChoice}) {
    for (const auto mode : {GradeMode::kStrict, GradeMode::kLenient, GradeMode::kSubstring}) {
      const Grade g = grade_response(response, kind == TaskKind::kInteger ? "25" : "B", mode, kind);
      RC_ASSERT(g.verdict != Verdict::kError);
      RC_ASSERT((g.verdict == Verdict::kNoAnswer) == (g.rule == "none"));
      if (mode != GradeMode::kSubstring) RC_ASSERT(g.extracted.has_value() == (g.verdict != Verdict::kNoAnswer));
    }
  }
}

TEST(Grader, JapaneseShareCountsScriptAmongLetters) {
  EXPECT_DOUBLE_EQ(japanese_share("ひらがなカタカナ漢字"), 1.0);
  EXPECT_DOUBLE_EQ(japanese_share("abcd"), 0.0);
  EXPECT_DOUBLE_EQ(japanese_share("ab日本"), 0.5);
  EXPECT_DOUBLE_EQ(japanese_share("12 + 34 = 46"), 0.0);
  EXPECT_DOUBLE_EQ(japanese_share("答えは \\boxed{\\frac{1}{2}} です"), 1.0);
}

}  // namespace
}  // namespace rvec
