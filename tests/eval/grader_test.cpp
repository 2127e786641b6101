#include "eval/grader.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

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
      EXPECT_EQ(grade.verdict, c[mode].get<std::string>()) << "mode " << mode << ", " << where(grade);
    }
    const auto strict = grade_response(response, gold, GradeMode::kStrict, kind);
    if (c.contains("extracted")) EXPECT_EQ(strict.extracted.value_or("-"), c["extracted"]) << where(strict);
    if (c.contains("rule")) EXPECT_EQ(strict.rule, c["rule"]) << where(strict);
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

TEST(Grader, JapaneseShareCountsScriptAmongLetters) {
  EXPECT_DOUBLE_EQ(japanese_share("ひらがなカタカナ漢字"), 1.0);
  EXPECT_DOUBLE_EQ(japanese_share("abcd"), 0.0);
  EXPECT_DOUBLE_EQ(japanese_share("ab日本"), 0.5);
  EXPECT_DOUBLE_EQ(japanese_share("12 + 34 = 46"), 0.0);
  EXPECT_DOUBLE_EQ(japanese_share("答えは \\boxed{\\frac{1}{2}} です"), 1.0);
}

}  // namespace
}  // namespace rvec
