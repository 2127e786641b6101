#include "eval/grader.hpp"

#include <utf8proc.h>

#include <algorithm>
#include <cctype>
#include <vector>

#include "eval/answer_text.hpp"
#include "text/regex.hpp"
#include "text/unicode.hpp"

namespace rvec {
namespace {

// A rule of docs/evaluation.md: a lower priority number wins; within one
// priority the candidate found last in the text wins.
struct Rule {
  const char* name;
  int priority;
};

constexpr Rule kMinerva{"minerva", 0};
constexpr Rule kBoxed{"boxed", 0};
constexpr Rule kFinalAnswer{"final_answer", 1};
constexpr Rule kAnswerColon{"answer_colon", 2};
constexpr Rule kAnswerIs{"answer_is", 2};
constexpr Rule kLastNumber{"last_number", 3};
constexpr Rule kLastLetter{"last_letter", 3};

// Where a rule found an answer: either the answer as a whole (a box's
// content, a math span, a number) or the sentence after an answer phrase,
// whose first value is the answer.
struct Candidate {
  Rule rule;
  size_t position = 0;  // byte offset of the match in the graded text
  std::string text;
  bool whole = false;
};

// The graded part of a response: the text after the last </think>, unless
// nothing follows it; normalised.
std::string graded_text(std::string_view response) {
  if (const auto think = response.rfind("</think>"); think != std::string_view::npos) {
    const auto after = response.substr(think + 8);
    if (after.find_first_not_of(" \t\r\n") != std::string_view::npos) response = after;
  }
  return normalize_answer_text(response);
}

template <typename F>
void for_each_match(const Regex& regex, std::string_view text, F&& on_match) {
  for (size_t at = 0; at <= text.size();) {
    const auto whole = regex.find(text, at);
    if (!whole) break;
    on_match(*whole, at);
    at = whole->end > whole->begin ? whole->end : whole->begin + 1;
  }
}

// Content of the box whose keyword ends at `at`: `{...}` with nested braces,
// or the token after `\boxed `; nullopt when the box is cut off or empty.
std::optional<std::string> box_content(std::string_view text, size_t at) {
  if (at < text.size() && text[at] == '{') {
    int depth = 0;
    for (size_t j = at; j < text.size(); ++j) {
      if (text[j] == '{') ++depth;
      if (text[j] == '}' && --depth == 0) return std::string(text.substr(at + 1, j - at - 1));
    }
    return std::nullopt;
  }
  if (at >= text.size() || text[at] != ' ') return std::nullopt;  // \boxedfoo is another command
  const auto begin = text.find_first_not_of(' ', at);
  if (begin == std::string_view::npos) return std::nullopt;
  const auto end = text.find_first_of(" \n$", begin);
  return std::string(text.substr(begin, end == std::string_view::npos ? std::string_view::npos : end - begin));
}

void add_boxes(std::string_view text, std::vector<Candidate>& out) {
  static const Regex kBox(R"(\\(?:boxed|fbox))", "box regex");
  for_each_match(kBox, text, [&](const Match& m, size_t) {
    const auto content = box_content(text, m.end);
    if (content && content->find_first_not_of(" \t\r\n") != std::string::npos) {
      out.push_back({kBoxed, m.begin, *content, true});
    }
  });
}

// Minerva's closing line: "Final Answer: The final answer is $7$. I hope it is correct."
void add_minerva(std::string_view text, std::vector<Candidate>& out) {
  static const Regex kMinervaLine(R"(final\s+answer\s+is\s*:?\s*(.{1,300}?)\s*\.?\s*I\s+hope)", "Minerva regex",
                                  true);
  for_each_match(kMinervaLine, text, [&](const Match& m, size_t at) {
    const auto answer = kMinervaLine.find_group(text, at, 1);
    out.push_back({kMinerva, m.begin, std::string(text.substr(answer->begin, answer->end - answer->begin)), true});
  });
}

// The math span that opens `text`, if any: "$7$", "\(7\)", "\[7\]", "$$7$$".
std::optional<std::string> leading_math(std::string_view text) {
  constexpr size_t kMaxMath = 400;
  struct Delimiters {
    std::string_view open, close;
  };
  static constexpr Delimiters kDelimiters[] = {{"$$", "$$"}, {"$", "$"}, {"\\(", "\\)"}, {"\\[", "\\]"}};
  for (const auto& [open, close] : kDelimiters) {
    if (!text.starts_with(open)) continue;
    const auto end = text.find(close, open.size());
    if (end == std::string_view::npos || end > kMaxMath) return std::nullopt;
    return std::string(text.substr(open.size(), end - open.size()));
  }
  return std::nullopt;
}

// The sentence that starts `text`: up to a line break, 。, or . ! ? before a
// space; at most 120 bytes.
std::string leading_sentence(std::string_view text) {
  constexpr size_t kMaxSentence = 120;
  size_t end = 0;
  while (end < text.size() && end < kMaxSentence) {
    const char c = text[end];
    if (c == '\n' || text.substr(end).starts_with("。")) break;
    if ((c == '.' || c == '!' || c == '?') &&
        (end + 1 == text.size() || std::isspace(static_cast<unsigned char>(text[end + 1])))) {
      break;
    }
    ++end;
  }
  std::string sentence(text.substr(0, end));
  sentence.resize(complete_utf8_prefix(sentence));
  return sentence;
}

// What follows an answer phrase ending at `at`, past spaces, line breaks,
// markdown emphasis, punctuation and opening quotes: a math span as a whole,
// else the sentence.
std::optional<Candidate> after_phrase(std::string_view text, size_t at, Rule rule, size_t position) {
  std::string_view rest = text.substr(at);
  for (bool skipped = true; skipped;) {
    skipped = false;
    for (const std::string_view junk : {" ", "\t", "\r", "\n", "*", ":", ",", "、", "「", "『", "\"", "(", "`"}) {
      if (rest.starts_with(junk)) {
        rest.remove_prefix(junk.size());
        skipped = true;
      }
    }
  }
  if (rest.empty()) return std::nullopt;
  if (auto math = leading_math(rest)) return Candidate{rule, position, std::move(*math), true};
  return Candidate{rule, position, leading_sentence(rest), false};
}

void add_phrases(std::string_view text, const Regex& phrase, Rule rule, std::vector<Candidate>& out) {
  for_each_match(phrase, text, [&](const Match& m, size_t) {
    if (auto candidate = after_phrase(text, m.end, rule, m.begin)) out.push_back(std::move(*candidate));
  });
}

void add_answer_phrases(std::string_view text, std::vector<Candidate>& out) {
  static const Regex kFinal(
      R"((?<![a-z])final\s+answer(?:[^\n.:]{0,60}?\s+is\b|\s*:)|最終(?:的な)?(?:答え|解答|回答)\s*(?:は|が|:))",
      "final-answer regex", true);
  static const Regex kColon(R"((?<![a-z])answer\s*:|(?:答え|回答|解答|正解|答案)\s*:)",
                            "answer-colon regex", true);
  static const Regex kIs(R"((?<![a-z])answer\s+is\b|(?:答え|回答|解答|正解)\s*(?:は|が)|答案\s*(?:是|为|為))",
                         "answer-is regex", true);
  add_phrases(text, kFinal, kFinalAnswer, out);
  add_phrases(text, kColon, kAnswerColon, out);
  add_phrases(text, kIs, kAnswerIs, out);
}

// Lenient mode's fallback: the last number (integer tasks) or the last letter
// A-E standing alone (choice tasks) anywhere in the text.
void add_last_value(std::string_view text, TaskKind kind, std::vector<Candidate>& out) {
  static const Regex kNumber(R"((?<![0-9A-Za-z.])(?:-(?=[0-9]))?(?:[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)(?:\.[0-9]+)?)",
                             "number regex");
  static const Regex kLetter(R"((?<![A-Za-z])[A-E](?![A-Za-z]))", "letter regex");
  const Regex& value = kind == TaskKind::kInteger ? kNumber : kLetter;
  std::optional<Match> last;
  for_each_match(value, text, [&](const Match& m, size_t) { last = m; });
  if (!last) return;
  out.push_back({kind == TaskKind::kInteger ? kLastNumber : kLastLetter, last->begin,
                 std::string(text.substr(last->begin, last->end - last->begin)), true});
}

// Every candidate of every rule the mode uses, best first.
std::vector<Candidate> candidates(std::string_view text, GradeMode mode, TaskKind kind) {
  std::vector<Candidate> found;
  add_boxes(text, found);
  add_minerva(text, found);
  add_answer_phrases(text, found);
  if (mode == GradeMode::kLenient) add_last_value(text, kind, found);
  std::stable_sort(found.begin(), found.end(), [](const Candidate& a, const Candidate& b) {
    return a.rule.priority != b.rule.priority ? a.rule.priority < b.rule.priority : a.position > b.position;
  });
  return found;
}

// A whole candidate that holds no value, as the record shows it: without math markup.
std::string as_written(std::string_view whole) {
  std::string stripped = strip_math(whole);
  return stripped.empty() ? std::string(whole) : stripped;
}

// The answer a candidate gives, if any: a whole candidate always gives one
// (a box that holds no integer is a wrong answer, not a fall-through); a
// sentence gives its value (answer_text.hpp), if it has one.
std::optional<AnswerValue> read_answer(const Candidate& c, TaskKind kind) {
  if (kind == TaskKind::kChoice) {
    if (const auto letter = choice_letter(c.text)) return AnswerValue{std::string(1, *letter), std::nullopt};
    if (!c.whole) return std::nullopt;
    return AnswerValue{as_written(c.text), std::nullopt};
  }
  if (!c.whole) return value_in_sentence(c.text);
  return AnswerValue{as_written(c.text), integer_value(c.text)};
}

std::string gold_letter(std::string_view gold) {
  std::string g(gold);
  while (!g.empty() && (g.back() == ' ' || g.back() == '\n')) g.pop_back();
  if (g.size() == 1 && g[0] >= '0' && g[0] <= '4') return std::string(1, static_cast<char>('A' + (g[0] - '0')));
  if (g.size() == 1 && g[0] >= 'a' && g[0] <= 'e') return std::string(1, static_cast<char>(g[0] - 'a' + 'A'));
  return g;
}

Grade grade_substring(std::string_view response, std::string_view gold) {
  if (response.find_first_not_of(" \t\r\n") == std::string_view::npos) return {std::nullopt, "none", "no_answer"};
  std::string g(gold);
  while (!g.empty() && g.back() == ' ') g.pop_back();
  const bool hit = !g.empty() && response.find(g) != std::string_view::npos;
  return {hit ? std::optional<std::string>(g) : std::nullopt, "substring", hit ? "correct" : "wrong"};
}

Grade verdict_for(const AnswerValue& answer, const char* rule, std::string_view gold, TaskKind kind) {
  if (kind == TaskKind::kChoice) return {answer.text, rule, answer.text == gold_letter(gold) ? "correct" : "wrong"};
  if (!answer.integer) return {answer.text, rule, "wrong"};
  const auto want = parse_integer_answer(gold);
  const std::string got = std::to_string(*answer.integer);
  const bool correct = want ? *answer.integer == *want : got == gold;
  return {got, rule, correct ? "correct" : "wrong"};
}

}  // namespace

std::optional<GradeMode> parse_grade_mode(std::string_view name) {
  if (name == "strict") return GradeMode::kStrict;
  if (name == "lenient") return GradeMode::kLenient;
  if (name == "substring") return GradeMode::kSubstring;
  return std::nullopt;
}

const char* grade_mode_name(GradeMode mode) {
  switch (mode) {
    case GradeMode::kStrict: return "strict";
    case GradeMode::kLenient: return "lenient";
    case GradeMode::kSubstring: return "substring";
  }
  return "?";
}

std::optional<long long> parse_integer_answer(std::string_view text) {
  return integer_value(normalize_answer_text(text));
}

Grade grade_response(std::string_view response, std::string_view gold, GradeMode mode, TaskKind kind) {
  if (mode == GradeMode::kSubstring) return grade_substring(response, gold);
  const std::string text = graded_text(response);
  for (const Candidate& c : candidates(text, mode, kind)) {
    if (const auto answer = read_answer(c, kind)) return verdict_for(*answer, c.rule.name, gold, kind);
  }
  return {std::nullopt, "none", "no_answer"};
}

double japanese_share(std::string_view text) {
  size_t letters = 0, japanese = 0, i = 0;
  while (i < text.size()) {
    utf8proc_int32_t cp = 0;
    const auto used = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + i),
                                       static_cast<utf8proc_ssize_t>(text.size() - i), &cp);
    if (used <= 0) {
      ++i;
      continue;
    }
    i += static_cast<size_t>(used);
    if (cp == '\\') {  // a LaTeX command (\boxed, \frac) is markup, not language
      while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
      continue;
    }
    const auto category = utf8proc_category(cp);
    if (category < UTF8PROC_CATEGORY_LU || category > UTF8PROC_CATEGORY_LO) continue;
    ++letters;
    const bool ja = (cp >= 0x3040 && cp <= 0x30FF) || (cp >= 0x31F0 && cp <= 0x31FF) ||
                    (cp >= 0xFF66 && cp <= 0xFF9F) || (cp >= 0x3400 && cp <= 0x4DBF) ||
                    (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x3005 && cp <= 0x3007);
    if (ja) ++japanese;
  }
  return letters == 0 ? 0.0 : static_cast<double>(japanese) / static_cast<double>(letters);
}

}  // namespace rvec
