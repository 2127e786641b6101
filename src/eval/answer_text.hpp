// Reading the value of an answer out of a short piece of model text: the
// normalisation steps of docs/evaluation.md ("Grading"), used by the grader's
// rules (grader.hpp). Pure functions over valid UTF-8; safe to call from any
// thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace rvec {

// NFKC (full-width digits and punctuation become ASCII), U+2212 as '-', the
// currency sign `\$` dropped, markdown bold `**` dropped (not between two
// letters or digits: 2**10), LaTeX thousands separators between digit groups
// (`1\,000`, `1{,}000`) as ',', other LaTeX spacing (`\,` `\;` `\:` `\!`
// `\ ` `~`) as a space. Ill-formed UTF-8 becomes U+FFFD first.
std::string normalize_answer_text(std::string_view text);

// `text` without math markup: the delimiters $ $$ \( \) \[ \], the wrappers
// \text{} \textbf{} \mathrm{} \mathbf{} \mbox{} \boxed{} \fbox{} (their
// argument kept), \left \right \displaystyle \quad, degree signs (^\circ, °)
// and percent signs; \dfrac and \tfrac become \frac. Trimmed.
std::string strip_math(std::string_view text);

// The right-hand side of the last '=' ("m+n=73" -> "73", not of <= >= !=),
// or `text` itself when it has none or holds a list ("a=1, b=2").
std::string_view right_of_equals(std::string_view text);

// Value of a kanji numeral: 二十五, 千二百三十四, 一万二千, positional 二〇二四;
// nullopt when `text` is anything else.
std::optional<long long> kanji_numeral_value(std::string_view text);

// Whether the kanji numeral at bytes [begin, end) of `text` stands as a number
// rather than inside a word: not after another ideograph (統一), not before の
// (一の位) or an ideograph (三角形) other than a counter or unit (二十五個, 三十度).
bool kanji_numeral_stands_alone(std::string_view text, size_t begin, size_t end);

// Integer value of `text` read as one answer (a box's content, a math span):
// after strip_math and right_of_equals, an integer ("025", "1,000", "25.0"),
// an exact fraction of integers (\frac{12}{3}) or a kanji numeral, followed by
// nothing but a unit or counter ("336 通り", "15 cm"). nullopt for anything
// else: "2.5", \frac{1}{2}, 2\sqrt{3}, "3 + 4", "x".
std::optional<long long> integer_value(std::string_view text);

// An answer as written, and its integer value when it has one.
struct AnswerValue {
  std::string text;
  std::optional<long long> integer;
};

// The value in the sentence after an answer phrase: the value right before a
// closing copula (です, でした, である, になります, となります; a unit, counter
// or closing quote may stand between) if one has it, else the first. A value starts at a number, a fraction or a kanji numeral that
// stands alone and runs over the math that follows it, so
// "一の位の数字で、7です" and "3 と 4 の和で、7 です" give 7, "3 + 4 = 7" gives 7
// (right of '='), and "2\sqrt{3}" is a value with no integer. nullopt when
// the sentence holds no value ("(none)", "いくつでしょうか").
std::optional<AnswerValue> value_in_sentence(std::string_view sentence);

// The first choice letter A-E in `text` that stands alone ("(B)", "\text{B}",
// "Bです"), not one inside a word.
std::optional<char> choice_letter(std::string_view text);

}  // namespace rvec
