#include "eval/grader.hpp"

#include <utf8proc.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <vector>

#include "base/regex.hpp"
#include "eval/answer_text.hpp"
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
// whose value (value_in_sentence) is the answer.
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

// `at`, or the start of the UTF-8 character that holds byte `at`.
size_t char_start(std::string_view text, size_t at) {
  while (at > 0 && at < text.size() && (static_cast<unsigned char>(text[at]) & 0xC0) == 0x80) --at;
  return at;
}

// Calls on_match(match) for every match of `regex` in `text` from byte `from`
// on, left to right, as one scan of the whole text finds them. PCRE2 checks
// the UTF-8 of the subject from the search start to its end on every call, so
// a search of the whole text for each of a long response's many matches
// (numbers, a model repeating 答えは6です。 until max_tokens) costs its length
// each time; each search gets a window of the text as its subject instead. A
// match that ends kMargin bytes before the window's end is the one the whole
// text gives, as no match of the rules' patterns spans kMargin bytes (they
// bound their repeats for this), and neither does one that starts earlier.
template <typename F>
void for_each_match(const Regex& regex, std::string_view text, size_t from, F&& on_match) {
  constexpr size_t kMargin = 2048;
  size_t at = from, window = 4 * kMargin;
  while (at < text.size()) {
    const size_t end = char_start(text, std::min(text.size(), at + window));
    const bool to_the_end = end == text.size();
    const auto m = regex.find(text.substr(0, end), at);
    if (m && (to_the_end || m->end + kMargin <= end)) {
      on_match(*m);
      at = m->end > m->begin ? m->end : m->begin + 1;
    } else if (to_the_end) {
      break;
    } else if (m) {
      window *= 2;  // a match near the window's end may run on: search again with more text
    } else {
      at = char_start(text, end - kMargin);
    }
  }
}

// The last match of `regex` in `text`, as one scan of the whole text finds it,
// for a `regex` that never matches white space: the search starts after white
// space near the end, where no match of the whole scan can be under way, and
// moves back until it finds one.
std::optional<Match> last_match(const Regex& regex, std::string_view text) {
  for (size_t window = 4096;; window *= 2) {
    size_t start = text.size() > window ? text.size() - window : 0;
    while (start > 0 && std::isspace(static_cast<unsigned char>(text[start - 1])) == 0) --start;
    std::optional<Match> last;
    for_each_match(regex, text, start, [&](const Match& m) { last = m; });
    if (last || start == 0) return last;
  }
}

// Every '{' of a text, by position, with the position of its matching '}'
// (npos when it is never closed).
std::map<size_t, size_t> brace_pairs(std::string_view text) {
  std::map<size_t, size_t> pairs;
  std::vector<size_t> open;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '{') {
      pairs[i] = std::string_view::npos;
      open.push_back(i);
    } else if (text[i] == '}' && !open.empty()) {
      pairs[open.back()] = i;
      open.pop_back();
    }
  }
  return pairs;
}

// Content of the box whose keyword ends at `at`: `{...}` with nested braces,
// or the token after `\boxed `; nullopt when the box is cut off.
std::optional<std::string_view> box_content(std::string_view text, size_t at, const std::map<size_t, size_t>& braces) {
  if (at < text.size() && text[at] == '{') {
    const size_t close = braces.at(at);
    if (close == std::string_view::npos) return std::nullopt;
    return text.substr(at + 1, close - at - 1);
  }
  if (at >= text.size() || text[at] != ' ') return std::nullopt;  // \boxedfoo is another command
  const auto begin = text.find_first_not_of(' ', at);
  if (begin == std::string_view::npos) return std::nullopt;
  const auto end = text.find_first_of(" \n$", begin);
  return text.substr(begin, end == std::string_view::npos ? std::string_view::npos : end - begin);
}

// Every box that holds something: \boxed{...}, \fbox{...}, \boxed N.
void add_boxes(std::string_view text, std::vector<Candidate>& out) {
  const auto braces = brace_pairs(text);
  for (const std::string_view keyword : {"\\boxed", "\\fbox"}) {
    for (size_t at = text.find(keyword); at != std::string_view::npos; at = text.find(keyword, at + 1)) {
      const auto content = box_content(text, at + keyword.size(), braces);
      if (content && content->find_first_not_of(" \t\r\n") != std::string_view::npos) {
        out.push_back({kBoxed, at, std::string(*content), true});
      }
    }
  }
}

// Minerva's closing line: "Final Answer: The final answer is $7$. I hope it is correct."
void add_minerva(std::string_view text, std::vector<Candidate>& out) {
  static const Regex kMinervaLine(
      R"(final\s{1,8}answer\s{1,8}is\s{0,8}:?\s{0,8}(.{1,300}?)\s{0,8}\.?\s{0,8}I\s{1,8}hope)", "Minerva regex", true);
  for_each_match(kMinervaLine, text, 0, [&](const Match& m) {
    const auto answer = kMinervaLine.find_group(text.substr(0, m.end), m.begin, 1);
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
  for_each_match(phrase, text, 0, [&](const Match& m) {
    if (auto candidate = after_phrase(text, m.end, rule, m.begin)) out.push_back(std::move(*candidate));
  });
}

// The phrase patterns bound their repeats (\s{0,8}), as for_each_match needs.
void add_answer_phrases(std::string_view text, std::vector<Candidate>& out) {
  static const Regex kFinal(  // "final answer ... is", "final answer:", or a "Final Answer" heading line
      R"((?<![a-z])final\s{1,8}answer(?:[^\n.:]{0,60}?\s{1,8}is\b|\s{0,8}:|[ \t]{0,8}(?=\n))|)"
      R"(最終(?:的な)?(?:答え|解答|回答)(?:\s{0,8}(?:は|が|:)|[ \t]{0,8}(?=\n)))",
      "final-answer regex", true);
  static const Regex kColon(R"((?<![a-z])answer\s{0,8}:|(?:答え|回答|解答|正解|答案)\s{0,8}:)", "answer-colon regex",
                            true);
  static const Regex kIs(
      R"((?<![a-z])answer\s{1,8}is\b|(?:答え|回答|解答|正解)\s{0,8}(?:は|が)|答案\s{0,8}(?:是|为|為))",
      "answer-is regex", true);
  add_phrases(text, kFinal, kFinalAnswer, out);
  add_phrases(text, kColon, kAnswerColon, out);
  add_phrases(text, kIs, kAnswerIs, out);
}

// Lenient mode's fallback: the last number (integer tasks) or the last letter
// A-E standing alone (choice tasks) anywhere in the text.
void add_last_value(std::string_view text, TaskKind kind, std::vector<Candidate>& out) {
  static const Regex kNumber(
      R"((?<![0-9A-Za-z.])(?:-(?=[0-9]))?(?:[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)(?:\.[0-9]+)?)", "number regex");
  static const Regex kLetter(R"((?<![A-Za-z])[A-E](?![A-Za-z]))", "letter regex");
  const Regex& value = kind == TaskKind::kInteger ? kNumber : kLetter;
  const auto last = last_match(value, text);
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


Grade grade_substring(std::string_view response, std::string_view gold) {
  if (response.find_first_not_of(" \t\r\n") == std::string_view::npos) return {std::nullopt, "none", Verdict::kNoAnswer};
  std::string g(gold);
  while (!g.empty() && g.back() == ' ') g.pop_back();
  const bool hit = !g.empty() && response.find(g) != std::string_view::npos;
  return {hit ? std::optional<std::string>(g) : std::nullopt, "substring", hit ? Verdict::kCorrect : Verdict::kWrong};
}

Grade verdict_for(const AnswerValue& answer, const char* rule, std::string_view gold, TaskKind kind) {
  if (kind == TaskKind::kChoice) return {answer.text, rule, answer.text == gold_letter(gold) ? Verdict::kCorrect : Verdict::kWrong};
  if (!answer.integer) return {answer.text, rule, Verdict::kWrong};
  const auto want = parse_integer_answer(gold);
  const std::string got = std::to_string(*answer.integer);
  const bool correct = want ? *answer.integer == *want : got == gold;
  return {got, rule, correct ? Verdict::kCorrect : Verdict::kWrong};
}

}  // namespace

std::string gold_letter(std::string_view gold) {
  std::string g(gold);
  while (!g.empty() && (g.back() == ' ' || g.back() == '\n')) g.pop_back();
  if (g.size() == 1 && g[0] >= '0' && g[0] <= '4') return std::string(1, static_cast<char>('A' + (g[0] - '0')));
  if (g.size() == 1 && g[0] >= 'a' && g[0] <= 'e') return std::string(1, static_cast<char>(g[0] - 'a' + 'A'));
  return g;
}

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

const char* verdict_name(Verdict verdict) {
  switch (verdict) {
    case Verdict::kCorrect: return "correct";
    case Verdict::kWrong: return "wrong";
    case Verdict::kNoAnswer: return "no_answer";
    case Verdict::kError: return "error";
  }
  return "?";
}

std::optional<Verdict> parse_verdict(std::string_view name) {
  for (const Verdict v : {Verdict::kCorrect, Verdict::kWrong, Verdict::kNoAnswer, Verdict::kError}) {
    if (name == verdict_name(v)) return v;
  }
  return std::nullopt;
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
  return {std::nullopt, "none", Verdict::kNoAnswer};
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
