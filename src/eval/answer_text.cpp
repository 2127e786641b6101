#include "eval/answer_text.hpp"

#include <utf8proc.h>

#include <cctype>
#include <cstring>

#include "base/regex.hpp"
#include "base/text.hpp"
#include "text/unicode.hpp"

namespace rvec {
namespace {

// An integer as written: sign, digits with optional thousands groups, decimals.
// \G anchors it where the search starts.
constexpr const char* kNumberAtStart = R"(\G-?(?:[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)(?:\.[0-9]+)?)";
constexpr std::u32string_view kKanjiNumerals = U"〇零一二三四五六七八九十百千万";
// Ideographs that may follow a kanji numeral which stands as a number.
// 年 and 分 make 二〇二四年 and 三十分 numbers; 角 stays out (三角形 is a word).
constexpr std::u32string_view kCounters = U"個人円本枚回通匹冊台歳度倍桁組点年月日時分秒件頭羽杯種";

struct Char {
  char32_t cp = 0;
  size_t size = 0;  // bytes; 0 at the end of the text
};

Char char_at(std::string_view text, size_t at) {
  if (at >= text.size()) return {};
  utf8proc_int32_t cp = 0;
  const auto used = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + at),
                                     static_cast<utf8proc_ssize_t>(text.size() - at), &cp);
  if (used <= 0) return {0xFFFD, 1};
  return {static_cast<char32_t>(cp), static_cast<size_t>(used)};
}

Char char_before(std::string_view text, size_t at) {
  if (at == 0) return {};
  size_t start = at - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  return char_at(text, start);
}

bool is_ideograph(char32_t cp) {
  return (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0xF900 && cp <= 0xFAFF) ||
         cp == 0x3005 || cp == 0x3007;
}

bool is_kanji_numeral(char32_t cp) { return cp != 0 && kKanjiNumerals.find(cp) != std::u32string_view::npos; }
bool is_ascii_alpha(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; }
bool is_ascii_digit(char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; }
bool is_ascii_alnum(char c) { return is_ascii_alpha(c) || is_ascii_digit(c); }

void replace_all(std::string& text, std::string_view from, std::string_view to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
}

// `text` with every match of `regex` replaced by its group 1 (removed if it has
// none). `regex` must not match the empty string.
std::string replace_matches(std::string_view text, const Regex& regex) {
  std::string out;
  size_t at = 0;
  const Utf8 utf8 = check_utf8_once(text);
  while (const auto whole = regex.find(text, at, utf8)) {
    const auto kept = regex.find_group(text, at, 1, utf8);
    out.append(text.substr(at, whole->begin - at));
    out.append(text.substr(kept->begin, kept->end - kept->begin));
    at = whole->end;
  }
  if (at < text.size()) out.append(text.substr(at));
  return out;
}

std::string_view trim(std::string_view text) {
  const auto begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string_view::npos) return {};
  return text.substr(begin, text.find_last_not_of(" \t\r\n") - begin + 1);
}

// LaTeX spacing at `at` (length `size`) between "1" and "000" separates thousands.
bool separates_thousands(std::string_view text, size_t at, size_t size) {
  const size_t after = at + size;
  if (at == 0 || !is_ascii_digit(text[at - 1]) || after + 3 > text.size()) return false;
  for (size_t i = after; i < after + 3; ++i) {
    if (!is_ascii_digit(text[i])) return false;
  }
  return after + 3 == text.size() || !is_ascii_digit(text[after + 3]);
}

// Markdown bold `**` dropped, except between two letters or digits, where it
// is an operator (2**10).
std::string drop_bold_markers(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    const bool operator_between =
        i > 0 && is_ascii_alnum(text[i - 1]) && i + 2 < text.size() && is_ascii_alnum(text[i + 2]);
    if (text.substr(i).starts_with("**") && !operator_between) {
      ++i;
      continue;
    }
    out += text[i];
  }
  return out;
}

std::string normalize_spacing(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    size_t size = 0;
    for (const std::string_view spacing : {"{,}", "\\,", "\\;", "\\:", "\\!", "\\ "}) {
      if (text.substr(i).starts_with(spacing)) size = spacing.size();
    }
    if (size == 0 && text[i] == '~') size = 1;
    if (size == 0) {
      out += text[i++];
      continue;
    }
    out += text[i] != '~' && separates_thousands(text, i, size) ? ',' : ' ';
    i += size;
  }
  return out;
}

// A number at byte `at` of `text`: where it ends, and its integer value if it is one.
struct Number {
  size_t end = 0;
  std::optional<long long> integer;
};

std::optional<long long> to_integer(std::string_view written) {
  std::string digits;
  for (const char c : written) {
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
    return std::nullopt;  // out of range
  }
}

std::optional<Number> number_at(std::string_view text, size_t at) {
  static const Regex kNumber(kNumberAtStart, "number regex");
  const auto m = kNumber.find(text, at);
  if (!m || m->begin != at) return std::nullopt;
  return Number{m->end, to_integer(text.substr(m->begin, m->end - m->begin))};
}

// Whether what follows a number leaves it a number: a unit, a counter or
// punctuation may follow; an operator, an exponent or a LaTeX command (\sqrt,
// \pi) may not.
bool ends_a_number(std::string_view rest) {
  rest = trim(rest);
  if (rest.empty()) return true;
  if (rest[0] == '\\') return false;
  const bool exponent = (rest[0] == 'e' || rest[0] == 'E') && rest.size() > 1 &&
                        (is_ascii_digit(rest[1]) || rest[1] == '+' || rest[1] == '-');
  if (exponent) return false;  // 1e3 is not read as 1
  for (const std::string_view op : {"+", "-", "*", "/", "^", "=", "×", "÷", "·", "√", "π"}) {
    if (rest.starts_with(op)) return false;
  }
  return true;
}

// End of the kanji numeral starting at `at`, or `at` if none starts there.
size_t kanji_numeral_end(std::string_view text, size_t at) {
  size_t end = at;
  for (Char c = char_at(text, end); is_kanji_numeral(c.cp); c = char_at(text, end)) end += c.size;
  return end;
}

std::optional<long long> exact_fraction(std::string_view text) {
  static const Regex kFraction(R"(^(-?)\s*\\frac\s*\{\s*(-?[0-9]+)\s*\}\s*\{\s*(-?[0-9]+)\s*\})", "fraction regex");
  const auto whole = kFraction.find(text);
  if (!whole || !ends_a_number(text.substr(whole->end))) return std::nullopt;
  const auto group = [&](int g) {
    const auto m = kFraction.find_group(text, 0, g);
    return text.substr(m->begin, m->end - m->begin);
  };
  const auto numerator = to_integer(group(2)), denominator = to_integer(group(3));
  if (!numerator || !denominator || *denominator == 0 || *numerator % *denominator != 0) return std::nullopt;
  const long long value = *numerator / *denominator;
  return group(1).empty() ? value : -value;
}

// Past opening brackets, quotes and currency signs before a value.
std::string_view skip_openers(std::string_view text) {
  for (bool skipped = true; skipped;) {
    skipped = false;
    text = trim(text);
    for (const std::string_view opener : {"(", "[", "{", "*", "\"", "'", "+", "「", "『", "¥", "€", "£"}) {
      if (text.starts_with(opener)) {
        text.remove_prefix(opener.size());
        skipped = true;
      }
    }
  }
  return text;
}

// End of the math that starts a value at `at`: digits, operators, LaTeX
// commands and one-letter variables; a word of two letters or more, or any
// non-ASCII text (です, 個), ends it.
size_t math_run_end(std::string_view text, size_t at) {
  size_t i = at;
  while (i < text.size()) {
    const char c = text[i];
    if (is_ascii_digit(c) || std::strchr(" +-*/^=()[]{}.,<>|'", c) != nullptr) {
      ++i;
    } else if (c == '\\') {
      for (++i; i < text.size() && is_ascii_alpha(text[i]);) ++i;
    } else if (is_ascii_alpha(c)) {
      size_t j = i;
      while (j < text.size() && is_ascii_alpha(text[j])) ++j;
      if (j - i > 1) break;
      i = j;
    } else if (const auto op = char_at(text, i); op.cp == U'×' || op.cp == U'÷' || op.cp == U'·') {
      i += op.size;
    } else {
      break;
    }
  }
  while (i > at && std::strchr(" ,.*", text[i - 1]) != nullptr) --i;
  return i;
}

// Whether a number or fraction starts at `at` (not inside a word or another number).
bool number_starts_at(std::string_view text, size_t at) {
  const char before = at > 0 ? text[at - 1] : ' ';
  if (is_ascii_alpha(before) || is_ascii_digit(before) || before == '.' || before == '\\') return false;
  const std::string_view rest = text.substr(at);
  if (rest.starts_with("\\frac") || rest.starts_with("-\\frac")) return true;
  return is_ascii_digit(rest[0]) || (rest.size() > 1 && rest[0] == '-' && is_ascii_digit(rest[1]));
}

// The value that starts at byte `at` of `text` (a number with the math that
// follows it, or a kanji numeral standing alone), and where it ends.
struct FoundValue {
  AnswerValue value;
  size_t end = 0;
};

std::optional<FoundValue> value_at(std::string_view text, size_t at) {
  if (number_starts_at(text, at)) {
    const size_t end = math_run_end(text, at);
    const std::string run(trim(text.substr(at, end - at)));
    return FoundValue{{run, integer_value(run)}, end};
  }
  const size_t end = kanji_numeral_end(text, at);
  if (end == at || !kanji_numeral_stands_alone(text, at, end)) return std::nullopt;
  const std::string numeral(text.substr(at, end - at));
  return FoundValue{{numeral, kanji_numeral_value(numeral)}, end};
}

// Whether `rest`, what follows a value, is the Japanese copula that closes an
// answer (です, でした, である, になります), after an optional unit or counter
// and closing quotes: "7 です", "25 個です", "24 通りです", "「7」です".
bool copula_follows(std::string_view rest) {
  static constexpr std::u32string_view kClosers = U" )]」』\"'";
  size_t i = 0;
  while (i < rest.size()) {
    const Char c = char_at(rest, i);
    if (rest.substr(i).starts_with("通り")) {
      i += std::string_view("通り").size();
    } else if (is_ascii_alpha(rest[i]) || kCounters.find(c.cp) != std::u32string_view::npos ||
               kClosers.find(c.cp) != std::u32string_view::npos) {
      i += c.size;
    } else {
      break;
    }
  }
  for (const std::string_view copula : {"です", "でした", "である", "になります", "となります"}) {
    if (rest.substr(i).starts_with(copula)) return true;
  }
  return false;
}

}  // namespace

std::string normalize_answer_text(std::string_view given) {
  std::string text = nfkc(replace_invalid_utf8(given));
  replace_all(text, "\u2212", "-");
  replace_all(text, "\\$", "");
  return normalize_spacing(drop_bold_markers(text));
}

std::string strip_math(std::string_view given) {
  static const Regex kWrapper(
      R"(\\(?:text|textbf|textrm|textit|mathrm|mathbf|mathit|mbox|boxed|fbox|operatorname)\s*\{([^{}]*)\})",
      "wrapper regex");
  static const Regex kMarkup(
      R"((?:\^\s*)?(?:\{\s*\\circ\s*\}|\\circ(?![A-Za-z]))|\\(?:displaystyle|left|right|quad|qquad|degree)(?![A-Za-z])|°|\\?%|\$|\\[()\[\]])",
      "markup regex");
  std::string text(given);
  for (std::string unwrapped = replace_matches(text, kWrapper); unwrapped != text;
       unwrapped = replace_matches(text, kWrapper)) {
    text = std::move(unwrapped);
  }
  text = replace_matches(text, kMarkup);
  replace_all(text, "\\dfrac", "\\frac");
  replace_all(text, "\\tfrac", "\\frac");
  return std::string(trim(text));
}

std::string_view right_of_equals(std::string_view text) {
  for (size_t i = 0; i < text.size(); ++i) {
    const bool separates_items =
        text[i] == ';' || (text[i] == ',' && !(i > 0 && is_ascii_digit(text[i - 1]) && i + 1 < text.size() &&
                                               is_ascii_digit(text[i + 1])));
    if (separates_items) return text;
  }
  for (size_t at = text.size(); at-- > 0;) {
    if (text[at] == '=' && (at == 0 || std::strchr("<>!", text[at - 1]) == nullptr)) return text.substr(at + 1);
  }
  return text;
}

std::optional<long long> kanji_numeral_value(std::string_view text) {
  static constexpr std::u32string_view kDigits = U"〇一二三四五六七八九";
  const auto digit = [](char32_t cp) -> int {
    if (cp == U'零') return 0;
    const auto at = kDigits.find(cp);
    return at == std::u32string_view::npos ? -1 : static_cast<int>(at);
  };
  const auto unit = [](char32_t cp) -> int { return cp == U'十' ? 10 : cp == U'百' ? 100 : cp == U'千' ? 1000 : 0; };
  std::u32string chars;
  for (size_t at = 0; at < text.size();) {
    const Char c = char_at(text, at);
    if (!is_kanji_numeral(c.cp)) return std::nullopt;
    chars += c.cp;
    at += c.size;
  }
  if (chars.empty() || chars.size() > 18) return std::nullopt;
  const bool positional = chars.find_first_of(U"十百千万") == std::u32string::npos;
  long long positional_value = 0, total = 0, section = 0, pending = -1;
  for (const char32_t cp : chars) {
    if (const int d = digit(cp); d >= 0) {
      if (!positional && pending >= 0) return std::nullopt;  // 二二十
      pending = d, positional_value = positional_value * 10 + d;
    } else if (const int u = unit(cp); u > 0) {
      section += (pending < 0 ? 1 : pending) * u, pending = -1;
    } else {  // 万
      total += (section + std::max(pending, 0LL)) * 10000, section = 0, pending = -1;
    }
  }
  return positional ? positional_value : total + section + std::max(pending, 0LL);
}

bool kanji_numeral_stands_alone(std::string_view text, size_t begin, size_t end) {
  if (is_ideograph(char_before(text, begin).cp) && !is_kanji_numeral(char_before(text, begin).cp)) return false;
  const char32_t next = char_at(text, end).cp;
  if (next == U'の') return false;
  return !is_ideograph(next) || kCounters.find(next) != std::u32string_view::npos;
}

std::optional<long long> integer_value(std::string_view given) {
  const std::string math = strip_math(given);
  const std::string_view text = skip_openers(right_of_equals(math));
  if (text.empty()) return std::nullopt;
  if (const auto fraction = exact_fraction(text)) return fraction;
  if (const auto number = number_at(text, 0)) {
    return ends_a_number(text.substr(number->end)) ? number->integer : std::nullopt;
  }
  const size_t end = kanji_numeral_end(text, 0);
  if (end == 0 || !kanji_numeral_stands_alone(text, 0, end)) return std::nullopt;
  return kanji_numeral_value(text.substr(0, end));
}

std::optional<AnswerValue> value_in_sentence(std::string_view sentence) {
  const std::string text = strip_math(sentence);
  std::optional<AnswerValue> first;
  for (size_t at = 0; at < text.size();) {
    if (auto found = value_at(text, at)) {
      if (copula_follows(std::string_view(text).substr(found->end))) return std::move(found->value);
      if (!first) first = std::move(found->value);
      at = found->end;
    } else {
      at = std::max(kanji_numeral_end(text, at), at + std::max<size_t>(char_at(text, at).size, 1));
    }
  }
  return first;
}

std::optional<char> choice_letter(std::string_view given) {
  const std::string text = strip_math(given);
  for (size_t at = 0; at < text.size(); ++at) {
    const bool alone =
        (at == 0 || !is_ascii_alpha(text[at - 1])) && (at + 1 == text.size() || !is_ascii_alpha(text[at + 1]));
    if (text[at] >= 'A' && text[at] <= 'E' && alone) return text[at];
  }
  return std::nullopt;
}

}  // namespace rvec
