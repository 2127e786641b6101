// Grading a model's response against a gold answer, per the rules in
// docs/evaluation.md (integer-answer math and multiple choice).
//
// The text after the last </think> (the whole response if nothing follows
// it) is normalised (answer_text.hpp), and every rule collects every
// candidate it finds, with the rule's priority:
//   0  boxed         \boxed{...} / \fbox{...} (nested braces) or \boxed N
//   0  minerva       "final answer is X. I hope it is correct."
//   1  final_answer  "final answer is X", "Final answer: X", a "Final Answer" heading
//                    line, 最終的な答えは X, 最終解答：X
//   2  answer_colon  "Answer: X", 答え：X, 回答：X, 解答：X, 正解：X
//   2  answer_is     "the answer is X", 答えは X, 答えが X, 正解は X, 答案是 X
//   3  last_number   (lenient only) the last number; last_letter for choices
// The highest priority wins and, within a priority, the candidate found last
// in the text, so a model that corrects itself is graded on its last answer.
// A candidate that holds no value (答えはいくつでしょうか) is passed over.
// Modes: strict (priorities 0-2), lenient (adds 3), substring (the paper's:
// the gold text appears anywhere in the raw response).
//
// All functions are pure and thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace rvec {

enum class GradeMode { kStrict, kLenient, kSubstring };
enum class TaskKind { kInteger, kChoice };

std::optional<GradeMode> parse_grade_mode(std::string_view name);
const char* grade_mode_name(GradeMode mode);

// The outcome of one sample. The grader gives the first three; kError is a
// request that failed, so there was no answer to grade.
enum class Verdict { kCorrect, kWrong, kNoAnswer, kError };

// "correct", "wrong", "no_answer", "error": the names results files use.
const char* verdict_name(Verdict verdict);
std::optional<Verdict> parse_verdict(std::string_view name);

struct Grade {
  std::optional<std::string> extracted;  // normalised answer ("25", "B"), if any
  std::string rule;                      // which rule fired ("boxed", "answer_is", ...), or "none"
  Verdict verdict = Verdict::kNoAnswer;
};

// `gold` is an integer ("025", "1,000") for kInteger, a letter A-E or an index 0-4 for kChoice.
Grade grade_response(std::string_view response, std::string_view gold, GradeMode mode, TaskKind kind);

// A multiple-choice gold answer as the letter the grader compares: "B" for
// "B", "b" or "1"; anything else as it is, trailing blanks removed.
std::string gold_letter(std::string_view gold);

// Integer value of an answer string after the normalisation steps ("025" -> 25,
// "1,000" -> 1000, "二十五" -> 25, "$25$ 個" -> 25, "\frac{12}{3}" -> 4); nullopt
// if it is not one ("2.5", "\frac{1}{2}").
std::optional<long long> parse_integer_answer(std::string_view text);

// Share of Japanese script (hiragana, katakana, CJK ideographs) among the
// letters of `text`, LaTeX command names not counted; 0 when it has no letters.
double japanese_share(std::string_view text);

}  // namespace rvec
