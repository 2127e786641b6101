#include "base/regex.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/error.hpp"

namespace rvec {
namespace {

// Every match of `regex` in `subject`, searched as the tokenizer does: each search starts where the last ended.
std::vector<std::string> all_matches(const Regex& regex, std::string_view subject, Utf8 utf8) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < subject.size()) {
    const auto m = regex.find(subject, at, utf8);
    if (!m) break;
    out.emplace_back(subject.substr(m->begin, m->end - m->begin));
    at = m->end > m->begin ? m->end : m->begin + 1;
  }
  return out;
}

TEST(Regex, ClassesFollowUnicode) {
  const Regex letters(R"(\p{L}+)", "test");
  EXPECT_EQ(all_matches(letters, "日本語 abc 123 Ωμέγα", Utf8::kCheck),
            (std::vector<std::string>{"日本語", "abc", "Ωμέγα"}));
  const Regex digits(R"(\d+)", "test");
  EXPECT_EQ(all_matches(digits, "１２３ and 45", Utf8::kCheck), (std::vector<std::string>{"１２３", "45"}));
}

TEST(Regex, ACheckedSubjectMatchesAsAnUncheckedOne) {
  const Regex split(R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
                    "test");
  std::string text;
  for (int i = 0; i < 200; ++i) text += i % 3 == 0 ? "日本語です。 " : i % 3 == 1 ? "It's 42 " : "\r\n  x";
  EXPECT_EQ(all_matches(split, text, Utf8::kChecked), all_matches(split, text, Utf8::kCheck));
}

TEST(Regex, GroupsThatDidNotTakePartAreEmpty) {
  const Regex r("a(b)?c", "test");
  const auto m = r.find_group("xacx", 0, 1);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->begin, m->end);
  const auto taken = r.find_group("xabcx", 0, 1);
  EXPECT_EQ(taken->begin, 2u);
  EXPECT_EQ(taken->end, 3u);
}

TEST(Regex, ErrorsNameThePattern) {
  try {
    Regex bad("a(b", "the answer pattern");
    ADD_FAILURE() << "compiled";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUsage);
    EXPECT_NE(std::string(e.what()).find("the answer pattern \"a(b\""), std::string::npos) << e.what();
  }
  const Regex r("b", "test");
  try {
    r.find("a\xFF" "b");
    ADD_FAILURE() << "searched invalid UTF-8";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
    EXPECT_NE(std::string(e.what()).find("regex \"b\" failed on the input"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace rvec
