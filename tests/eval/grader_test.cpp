#include "eval/grader.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.hpp"

namespace rvec {
namespace {

// grader_cases.jsonl: realistic responses with the verdict each mode must give.
TEST(Grader, TableOfResponsesGetsTheExpectedVerdictInEveryMode) {
  std::ifstream in(test::source_dir() / "tests" / "eval" / "grader_cases.jsonl");
  size_t line_number = 0, cases = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_number;
    const auto c = nlohmann::json::parse(line);
    const auto kind = c.value("kind", "integer") == "choice" ? TaskKind::kChoice : TaskKind::kInteger;
    for (const char* mode : {"strict", "lenient", "substring"}) {
      const auto grade = grade_response(c["response"].get<std::string>(), c["gold"].get<std::string>(),
                                        *parse_grade_mode(mode), kind);
      EXPECT_EQ(grade.verdict, c[mode].get<std::string>())
          << "line " << line_number << " mode " << mode << ": " << c["response"] << " gold " << c["gold"]
          << " (extracted " << grade.extracted.value_or("-") << " by " << grade.rule << ")";
    }
    ++cases;
  }
  EXPECT_GE(cases, 80u);
}

TEST(Grader, RecordsWhichRuleFired) {
  EXPECT_EQ(grade_response("\\boxed{3}", "3", GradeMode::kStrict, TaskKind::kInteger).rule, "boxed");
  EXPECT_EQ(grade_response("答え：3", "3", GradeMode::kStrict, TaskKind::kInteger).rule, "answer_colon");
  EXPECT_EQ(grade_response("the answer is 3", "3", GradeMode::kStrict, TaskKind::kInteger).rule, "answer_is");
  EXPECT_EQ(grade_response("so 3", "3", GradeMode::kLenient, TaskKind::kInteger).rule, "last_number");
  EXPECT_EQ(grade_response("so 3", "3", GradeMode::kStrict, TaskKind::kInteger).rule, "none");
  EXPECT_EQ(grade_response("\\boxed{007}", "7", GradeMode::kStrict, TaskKind::kInteger).extracted, "7");
}

TEST(Grader, IntegerAnswersParseAfterCleaning) {
  EXPECT_EQ(parse_integer_answer("025"), 25);
  EXPECT_EQ(parse_integer_answer("1,000"), 1000);
  EXPECT_EQ(parse_integer_answer("１２"), 12);
  EXPECT_EQ(parse_integer_answer("九百九十九"), 999);
  EXPECT_EQ(parse_integer_answer("−7"), -7);
  EXPECT_EQ(parse_integer_answer("2.5"), std::nullopt);
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
