#include "eval/grader.hpp"

#include <utf8proc.h>

#include <cctype>
#include <vector>

#include "base/text.hpp"
#include "base/regex.hpp"
#include "text/unicode.hpp"

namespace rvec {
namespace {

// A number as written: sign, digits with optional thousands groups, decimals.
constexpr const char* kNumber = R"(-?\d+(?:,\d{3})*(?:\.\d+)?)";
constexpr const char* kKanjiDigits = "〇零一二三四五六七八九十百千万";

void replace_all(std::string& text, std::string_view from, std::string_view to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
}

// NFKC, minus sign, LaTeX spacing; the part after the last </think>.
std::string normalize_response(std::string_view response) {
  std::string text = nfkc(replace_invalid_utf8(response));
  if (const auto think = text.rfind("</think>"); think != std::string::npos) {
    const auto after = text.substr(think + 8);
    if (after.find_first_not_of(" \t\r\n") != std::string::npos) text = after;
  }
  replace_all(text, "\u2212", "-");
  replace_all(text, "{,}", ",");  // LaTeX thousands separator
  replace_all(text, "\\$", "$");
  for (const char* spacing : {"\\,", "\\!", "\\;", "\\ ", "~"}) replace_all(text, spacing, " ");
  return text;
}

// Content of the last \boxed{...} / \fbox{...} (braces matched), or the token after "\boxed ".
std::optional<std::string> last_boxed(const std::string& text) {
  size_t start = std::string::npos, keyword = 0;
  for (const std::string_view k : {"\\boxed", "\\fbox"}) {
    const auto at = text.rfind(k);
    if (at != std::string::npos && (start == std::string::npos || at > start)) start = at, keyword = k.size();
  }
  if (start == std::string::npos) return std::nullopt;
  size_t i = start + keyword;
  if (i < text.size() && text[i] == '{') {
    int depth = 0;
    for (size_t j = i; j < text.size(); ++j) {
      if (text[j] == '{') ++depth;
      if (text[j] == '}' && --depth == 0) return text.substr(i + 1, j - i - 1);
    }
    return std::nullopt;  // cut off inside the box
  }
  while (i < text.size() && text[i] == ' ') ++i;
  const auto end = text.find_first_of(" \n$", i);
  if (end == i) return std::nullopt;
  return text.substr(i, end == std::string::npos ? std::string::npos : end - i);
}

// Group 1 of the last match of `regex` in `text`, if any.
std::optional<std::string> after_last(const Regex& regex, const std::string& text) {
  std::optional<std::string> found;
  size_t at = 0;
  while (at <= text.size()) {
    const auto whole = regex.find(text, at);
    if (!whole) break;
    const auto group = regex.find_group(text, at, 1);
    found = text.substr(group->begin, group->end - group->begin);
    at = whole->end > whole->begin ? whole->end : whole->begin + 1;
  }
  return found;
}

long long kanji_value(std::string_view text) {
  static const std::vector<std::pair<std::string, int>> digits = {
      {"〇", 0}, {"零", 0}, {"一", 1}, {"二", 2}, {"三", 3}, {"四", 4},
      {"五", 5}, {"六", 6}, {"七", 7}, {"八", 8}, {"九", 9}};
  static const std::vector<std::pair<std::string, int>> units = {{"十", 10}, {"百", 100}, {"千", 1000}};
  const bool positional = text.find("十") == std::string_view::npos && text.find("百") == std::string_view::npos &&
                          text.find("千") == std::string_view::npos && text.find("万") == std::string_view::npos;
  long long total = 0, section = 0, digit = -1, positional_value = 0;
  size_t i = 0;
  while (i < text.size()) {
    bool matched = false;
    for (const auto& [k, v] : digits) {
      if (text.compare(i, k.size(), k) == 0) {
        digit = v, positional_value = positional_value * 10 + v, i += k.size(), matched = true;
        break;
      }
    }
    if (matched) continue;
    for (const auto& [k, v] : units) {
      if (text.compare(i, k.size(), k) == 0) {
        section += (digit < 0 ? 1 : digit) * v, digit = -1, i += k.size(), matched = true;
        break;
      }
    }
    if (matched) continue;
    if (text.compare(i, 3, "万") == 0) {
      total += (section + std::max(digit, 0LL)) * 10000, section = 0, digit = -1, i += 3;
      continue;
    }
    return -1;
  }
  return positional ? positional_value : total + section + std::max(digit, 0LL);
}

// "$\text{25}$ 個。" -> "25"; "x = 12" -> "12": the first value in the candidate.
std::optional<std::string> first_value(std::string text) {
  static const Regex kWrapper(R"(\\(?:text|mathrm|mathbf|textbf)\{([^{}]*)\})", "wrapper regex");
  while (const auto m = kWrapper.find_group(text, 0, 1)) {
    const auto whole = kWrapper.find(text, 0);
    text = text.substr(0, whole->begin) + text.substr(m->begin, m->end - m->begin) + text.substr(whole->end);
  }
  static const Regex kValue(std::string("^[\\s$*(\\[{]*(?:[a-zA-Z]\\s*=\\s*)?(") + kNumber + "|[" + kKanjiDigits + "]+)",
                            "value regex");
  const auto m = kValue.find_group(text, 0, 1);
  if (!m || m->end == m->begin) return std::nullopt;
  return text.substr(m->begin, m->end - m->begin);
}

std::optional<std::string> first_letter(const std::string& text) {
  static const Regex kLetter(R"(^[\s$*(\[{]*(?:\\text\{)?\(?([A-E])\b)", "choice regex");
  const auto m = kLetter.find_group(text, 0, 1);
  if (!m || m->end == m->begin) return std::nullopt;
  return text.substr(m->begin, m->end - m->begin);
}

std::string gold_letter(std::string_view gold) {
  std::string g(gold);
  while (!g.empty() && (g.back() == ' ' || g.back() == '\n')) g.pop_back();
  if (g.size() == 1 && g[0] >= '0' && g[0] <= '4') return std::string(1, static_cast<char>('A' + (g[0] - '0')));
  if (g.size() == 1 && g[0] >= 'a' && g[0] <= 'e') return std::string(1, static_cast<char>(g[0] - 'a' + 'A'));
  return g;
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

std::optional<long long> parse_integer_answer(std::string_view given) {
  std::string text = nfkc(replace_invalid_utf8(given));
  replace_all(text, "\u2212", "-");
  const auto value = first_value(text);
  if (!value) return std::nullopt;
  if (value->find_first_of("0123456789") == std::string::npos) {
    const auto k = kanji_value(*value);
    return k < 0 ? std::nullopt : std::optional<long long>(k);
  }
  std::string digits;
  for (char c : *value) {
    if (c != ',') digits += c;
  }
  if (const auto dot = digits.find('.'); dot != std::string::npos) {
    if (digits.find_first_not_of('0', dot + 1) != std::string::npos) return std::nullopt;  // 2.5 is not an integer
    digits.resize(dot);
  }
  try {
    size_t used = 0;
    const long long v = std::stoll(digits, &used);
    return used == digits.size() ? std::optional<long long>(v) : std::nullopt;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

Grade grade_response(std::string_view response, std::string_view gold, GradeMode mode, TaskKind kind) {
  if (mode == GradeMode::kSubstring) {
    std::string g(gold);
    while (!g.empty() && g.back() == ' ') g.pop_back();
    const bool hit = !g.empty() && response.find(g) != std::string_view::npos;
    if (response.find_first_not_of(" \t\r\n") == std::string_view::npos) return {std::nullopt, "none", "no_answer"};
    return {hit ? std::optional<std::string>(g) : std::nullopt, "substring", hit ? "correct" : "wrong"};
  }
  const std::string text = normalize_response(response);
  static const Regex kPhrase(R"((?:最終的な答え|最終解答|答え|回答|解答|final\s+answer|answer)\s*(?:\*\*)?\s*[:は]\s*(?:\*\*)?([^\n]{0,80}))",
                             "answer phrase regex", true);
  static const Regex kAnswerIs(R"((?:the\s+answer\s+is|答えが)\s*:?\s*([^\n]{0,80}))", "answer-is regex", true);
  static const Regex kLastNumber(std::string("(") + kNumber + ")", "number regex");
  static const Regex kLastLetter(R"(\(?\b([A-E])\b\)?)", "letter regex");
  const auto pick = [&](const std::optional<std::string>& candidate) -> std::optional<std::string> {
    if (!candidate) return std::nullopt;
    return kind == TaskKind::kInteger ? first_value(*candidate) : first_letter(*candidate);
  };
  std::optional<std::string> value;
  std::string rule = "none";
  // A box that holds no number (\frac{1}{2}) is still the answer given: it grades as wrong.
  const auto boxed = last_boxed(text);
  const auto boxed_value = boxed && !pick(boxed) && boxed->find_first_not_of(' ') != std::string::npos ? boxed : pick(boxed);
  const std::pair<const char*, std::optional<std::string>> tries[] = {
      {"boxed", boxed_value},
      {"phrase", pick(after_last(kPhrase, text))},
      {"answer_is", pick(after_last(kAnswerIs, text))},
  };
  for (const auto& [name, candidate] : tries) {
    if (candidate) {
      value = candidate, rule = name;
      break;
    }
  }
  if (!value && mode == GradeMode::kLenient) {
    value = after_last(kind == TaskKind::kInteger ? kLastNumber : kLastLetter, text);
    if (value) rule = "last_number";
  }
  if (!value) return {std::nullopt, "none", "no_answer"};
  if (kind == TaskKind::kChoice) return {value, rule, *value == gold_letter(gold) ? "correct" : "wrong"};
  const auto got = parse_integer_answer(*value), want = parse_integer_answer(gold);
  if (!got) return {value, rule, "wrong"};
  const bool correct = want ? *got == *want : std::to_string(*got) == gold;
  return {std::to_string(*got), rule, correct ? "correct" : "wrong"};
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
