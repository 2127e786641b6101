// Grading a model's response against a gold answer, per the rules in
// docs/evaluation.md (integer-answer math and multiple choice).
//
// The answer is looked for in the text after the last </think> (the whole
// response if there is none), after NFKC normalisation, by these rules in
// order; the first that yields a candidate fires:
//   boxed        the last \boxed{...} / \fbox{...} (nested braces) or \boxed N
//   phrase       the last 答え / 回答 / 解答 / 最終的な答え / Answer / Final answer
//                followed by : ： or は and a value
//   answer_is    "the answer is N"
//   last_number  (lenient only) the last number in the response
// Modes: strict (boxed, phrase, answer_is), lenient (adds last_number),
// substring (the paper's: the gold text appears anywhere in the response).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace rvec {

enum class GradeMode { kStrict, kLenient, kSubstring };
enum class TaskKind { kInteger, kChoice };

std::optional<GradeMode> parse_grade_mode(std::string_view name);
const char* grade_mode_name(GradeMode mode);

struct Grade {
  std::optional<std::string> extracted;  // normalised answer ("25", "B"), if any
  std::string rule;                      // which rule fired, or "none"
  std::string verdict;                   // "correct", "wrong" or "no_answer"
};

// `gold` is an integer ("025", "1,000") for kInteger, a letter A-E or an index 0-4 for kChoice.
Grade grade_response(std::string_view response, std::string_view gold, GradeMode mode, TaskKind kind);

// Integer value of an answer string after the cleaning rules ("025" -> 25,
// "1,000" -> 1000, "二十五" -> 25, "$25$ 個" -> 25); nullopt if it is not one.
std::optional<long long> parse_integer_answer(std::string_view text);

// Share of Japanese script (hiragana, katakana, CJK ideographs) among the
// letters of `text`, LaTeX command names not counted; 0 when it has no letters.
double japanese_share(std::string_view text);

}  // namespace rvec
