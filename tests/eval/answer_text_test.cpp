// The normalisation steps of docs/evaluation.md, one helper at a time.
#include "eval/answer_text.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <string>

#include "eval/grader.hpp"

namespace rvec {
namespace {

TEST(AnswerText, NormalizeMakesDigitsSignsAndSeparatorsPlain) {
  EXPECT_EQ(normalize_answer_text("答え：１２３"), "答え:123");
  EXPECT_EQ(normalize_answer_text("\u22127"), "-7");
  EXPECT_EQ(normalize_answer_text("\\$45"), "45");
  EXPECT_EQ(normalize_answer_text("1\\,000"), "1,000");
  EXPECT_EQ(normalize_answer_text("1{,}000{,}000"), "1,000,000");
  EXPECT_EQ(normalize_answer_text("x\\,dx"), "x dx");      // \, between letters is only a space
  EXPECT_EQ(normalize_answer_text("1\\,0000"), "1 0000");  // not a group of three digits
  EXPECT_EQ(normalize_answer_text("3\\;4~5\\!6"), "3 4 5 6");
  EXPECT_EQ(normalize_answer_text("\xff"), "\uFFFD");
}

TEST(AnswerText, NormalizeDropsMarkdownBoldButNotAPowerOperator) {
  EXPECT_EQ(normalize_answer_text("**Answer:** **7**."), "Answer: 7.");
  EXPECT_EQ(normalize_answer_text("答えは**7**です"), "答えは7です");
  EXPECT_EQ(normalize_answer_text("2**10"), "2**10");
}

TEST(AnswerText, StripMathRemovesDelimitersWrappersAndUnitsMarks) {
  EXPECT_EQ(strip_math("$7$"), "7");
  EXPECT_EQ(strip_math("\\(385\\)"), "385");
  EXPECT_EQ(strip_math("\\[ 7 \\]"), "7");
  EXPECT_EQ(strip_math("$$12$$"), "12");
  EXPECT_EQ(strip_math("\\boxed{\\text{\\textbf{25}}}"), "25");
  EXPECT_EQ(strip_math("\\mathrm{B}"), "B");
  EXPECT_EQ(strip_math("\\left(3\\right)"), "(3)");
  EXPECT_EQ(strip_math("90^\\circ"), "90");
  EXPECT_EQ(strip_math("90^{\\circ}"), "90");
  EXPECT_EQ(strip_math("90°"), "90");
  EXPECT_EQ(strip_math("5\\%"), "5");
  EXPECT_EQ(strip_math("\\dfrac{1}{2} + \\tfrac{1}{2}"), "\\frac{1}{2} + \\frac{1}{2}");
}

TEST(AnswerText, RightOfEqualsKeepsTheLastRightHandSide) {
  EXPECT_EQ(right_of_equals("m+n=73"), "73");
  EXPECT_EQ(right_of_equals("a+b=7+3=10"), "10");
  EXPECT_EQ(right_of_equals("x \\le 5"), "x \\le 5");
  EXPECT_EQ(right_of_equals("x<=5"), "x<=5");
  EXPECT_EQ(right_of_equals("x != 5"), "x != 5");
  EXPECT_EQ(right_of_equals("x=1, y=2"), "x=1, y=2");  // a list is not one value
  EXPECT_EQ(right_of_equals("x = 1,000"), " 1,000");   // a thousands comma is no list
  EXPECT_EQ(right_of_equals("42"), "42");
}

TEST(AnswerText, KanjiNumeralsReadAsNumbers) {
  EXPECT_EQ(kanji_numeral_value("七"), 7);
  EXPECT_EQ(kanji_numeral_value("十"), 10);
  EXPECT_EQ(kanji_numeral_value("二十五"), 25);
  EXPECT_EQ(kanji_numeral_value("三百"), 300);
  EXPECT_EQ(kanji_numeral_value("千二百三十四"), 1234);
  EXPECT_EQ(kanji_numeral_value("一万二千"), 12000);
  EXPECT_EQ(kanji_numeral_value("二〇二四"), 2024);
  EXPECT_EQ(kanji_numeral_value("零"), 0);
  EXPECT_EQ(kanji_numeral_value("二二十"), std::nullopt);
  EXPECT_EQ(kanji_numeral_value("三角"), std::nullopt);
  EXPECT_EQ(kanji_numeral_value(""), std::nullopt);
}

// Bytes of the first occurrence of `numeral` in `text`, for kanji_numeral_stands_alone.
bool stands_alone(std::string_view text, std::string_view numeral) {
  const size_t at = text.find(numeral);
  return kanji_numeral_stands_alone(text, at, at + numeral.size());
}

TEST(AnswerText, KanjiNumeralsInsideWordsAreNotNumbers) {
  EXPECT_TRUE(stands_alone("答えは七です", "七"));
  EXPECT_TRUE(stands_alone("二十五個", "二十五"));
  EXPECT_TRUE(stands_alone("三つ", "三"));
  EXPECT_TRUE(stands_alone("二〇二四年", "二〇二四"));
  EXPECT_FALSE(stands_alone("一の位", "一"));
  EXPECT_FALSE(stands_alone("統一", "一"));
  EXPECT_FALSE(stands_alone("三角形", "三"));
  EXPECT_FALSE(stands_alone("第三象限", "三"));
}

TEST(AnswerText, IntegerValueOfOneAnswer) {
  EXPECT_EQ(integer_value("025"), 25);
  EXPECT_EQ(integer_value("1,000"), 1000);
  EXPECT_EQ(integer_value("25.0"), 25);
  EXPECT_EQ(integer_value("-3"), -3);
  EXPECT_EQ(integer_value("$x = 7$"), 7);
  EXPECT_EQ(integer_value("m+n=73"), 73);
  EXPECT_EQ(integer_value("\\frac{12}{3}"), 4);
  EXPECT_EQ(integer_value("-\\frac{8}{2}"), -4);
  EXPECT_EQ(integer_value("\\frac{-8}{2}"), -4);
  EXPECT_EQ(integer_value("336 通り"), 336);
  EXPECT_EQ(integer_value("15\\text{ cm}"), 15);
  EXPECT_EQ(integer_value("(7)"), 7);
  EXPECT_EQ(integer_value("二十五個"), 25);
  EXPECT_EQ(integer_value("2.5"), std::nullopt);
  EXPECT_EQ(integer_value("\\frac{1}{2}"), std::nullopt);
  EXPECT_EQ(integer_value("\\frac{1}{0}"), std::nullopt);
  EXPECT_EQ(integer_value("2\\sqrt{3}"), std::nullopt);
  EXPECT_EQ(integer_value("3 + 4"), std::nullopt);
  EXPECT_EQ(integer_value("2^{10}"), std::nullopt);
  EXPECT_EQ(integer_value("1e3"), std::nullopt);
  EXPECT_EQ(integer_value("x"), std::nullopt);
  EXPECT_EQ(integer_value("99999999999999999999"), std::nullopt);  // out of range
  EXPECT_EQ(integer_value("一の位"), std::nullopt);
}

TEST(AnswerText, ValueInSentencePrefersTheValueBeforeTheCopula) {
  const auto value = [](std::string_view sentence) { return value_in_sentence(sentence).value().integer; };
  EXPECT_EQ(value("一の位の数字で、7です"), 7);
  EXPECT_EQ(value("3 と 4 の和で、7 です"), 7);
  EXPECT_EQ(value("3 + 4 = 7 です"), 7);
  EXPECT_EQ(value("「3」ではなく「7」です"), 7);
  EXPECT_EQ(value("25 個です"), 25);
  EXPECT_EQ(value("7 apples, and 3 pears"), 7);  // no copula: the first value
  EXPECT_EQ(value("二十五です"), 25);
  EXPECT_EQ(value_in_sentence("2\\sqrt{3}")->text, "2\\sqrt{3}");
  EXPECT_EQ(value_in_sentence("2\\sqrt{3}")->integer, std::nullopt);
  EXPECT_EQ(value_in_sentence("いくつでしょうか"), std::nullopt);
  EXPECT_EQ(value_in_sentence("(none)"), std::nullopt);
  EXPECT_EQ(value_in_sentence("三角形の面積"), std::nullopt);
}

TEST(AnswerText, ChoiceLetterStandsAlone) {
  EXPECT_EQ(choice_letter("(B)"), 'B');
  EXPECT_EQ(choice_letter("\\text{(D)}"), 'D');
  EXPECT_EQ(choice_letter("Cです"), 'C');
  EXPECT_EQ(choice_letter("Apple"), std::nullopt);
  EXPECT_EQ(choice_letter("F"), std::nullopt);
}

// n written with kanji numerals the usual way: 一万二千三百四十五, 十 (not 一十).
std::string to_kanji(long long n) {
  static const char* const kDigits[] = {"〇", "一", "二", "三", "四", "五", "六", "七", "八", "九"};
  static const char* const kUnits[] = {"", "十", "百", "千"};
  static constexpr long long kPlaces[] = {1, 10, 100, 1000};
  const auto section = [&](long long s) {
    std::string out;
    for (int place = 3; place >= 0; --place) {
      const long long digit = s / kPlaces[place] % 10;
      if (digit == 0) continue;
      if (digit > 1 || place == 0) out += kDigits[digit];
      out += kUnits[place];
    }
    return out;
  };
  if (n == 0) return kDigits[0];
  const std::string high = n >= 10000 ? section(n / 10000) + "万" : "";
  return high + section(n % 10000);
}

RC_GTEST_PROP(AnswerText, EveryWayOfWritingAnIntegerReadsBack, ()) {
  const long long n = *rc::gen::inRange<long long>(0, 100'000'000);
  const std::string plain = std::to_string(n);
  std::string grouped = plain;
  for (auto at = static_cast<long long>(grouped.size()) - 3; at > 0; at -= 3) grouped.insert(at, ",");
  std::string latex = grouped;
  for (size_t at = latex.find(','); at != std::string::npos; at = latex.find(',', at + 2)) latex.replace(at, 1, "\\,");
  RC_ASSERT(parse_integer_answer(plain) == n);
  RC_ASSERT(parse_integer_answer(grouped) == n);
  RC_ASSERT(parse_integer_answer(latex) == n);
  RC_ASSERT(parse_integer_answer("$" + plain + "$") == n);
  RC_ASSERT(parse_integer_answer(to_kanji(n)) == n);
  RC_ASSERT(parse_integer_answer("-" + plain) == -n);
}

RC_GTEST_PROP(AnswerText, TheLastAnswerOfOnePriorityWins, ()) {
  const auto answers = *rc::gen::nonEmpty(rc::gen::container<std::vector<int>>(rc::gen::inRange(0, 1000)));
  static const char* const kPhrases[] = {"答えは {} です。", "Answer: {}\n", "The answer is \\({}\\). ", "答え：{}\n"};
  std::string response;
  for (const int answer : answers) {
    response += fmt::format(fmt::runtime(kPhrases[*rc::gen::inRange(0, 4)]), answer);
    response += "検算すると… ";
  }
  const auto grade = grade_response(response, std::to_string(answers.back()), GradeMode::kStrict, TaskKind::kInteger);
  RC_ASSERT(grade.verdict == Verdict::kCorrect);
}

}  // namespace
}  // namespace rvec
