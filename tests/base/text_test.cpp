#include "base/text.hpp"

#include <gtest/gtest.h>

#include "test_util.hpp"

namespace rvec {
namespace {

TEST(Utf8, AcceptsWellFormedAndFindsFirstBadByte) {
  EXPECT_FALSE(first_invalid_utf8("plain ascii"));
  EXPECT_FALSE(first_invalid_utf8("日本語 ✓ 😀"));
  EXPECT_EQ(first_invalid_utf8("ab\xFF"), 2u);
  EXPECT_EQ(first_invalid_utf8("\xC0\x80"), 0u);          // overlong NUL
  EXPECT_EQ(first_invalid_utf8("x\xED\xA0\x80"), 1u);     // surrogate
  EXPECT_EQ(first_invalid_utf8("\xF4\x90\x80\x80"), 0u);  // > U+10FFFF
  EXPECT_EQ(first_invalid_utf8("\xE6\x97"), 0u);          // truncated
}

TEST(ControlCharacters, C0DelAndC1AreControls) {
  EXPECT_FALSE(has_control_character("model.layers.0.mlp 日本"));
  EXPECT_TRUE(has_control_character(std::string("a\0b", 3)));
  EXPECT_TRUE(has_control_character("a\tb"));
  EXPECT_TRUE(has_control_character("a\x7F"));
  EXPECT_TRUE(has_control_character("a\xC2\x85"));  // U+0085 NEL
  EXPECT_EQ(printable("a\nb\"c"), "a\\x0ab\\x22c");
  EXPECT_EQ(printable("p\xFFq 日本"), "p\\xffq 日本");  // bytes that are not UTF-8 too
  EXPECT_EQ(printable("\xE6\x97!"), "\\xe6\\x97!");      // a truncated sequence
}

// Error text from outside (a YAML parser's, a variant name) once printed
// across lines, raw bytes included, and a 5000-digit number in full.
TEST(OneLine, EscapesControlsAndBadBytesKeepsQuotesAndCapsTheLength) {
  EXPECT_EQ(one_line("variant name \"a\nb\" \xFF 日本"), "variant name \"a\\x0ab\" \\xff 日本");
  EXPECT_EQ(one_line(std::string("cut at \0 NUL", 12)), "cut at \\x00 NUL");
  EXPECT_EQ(one_line(std::string(5000, '9'), 2000), std::string(2000, '9') + "... (3000 more bytes)");
  EXPECT_EQ(one_line("日本語", 4), "日本... (3 more bytes)");  // cut after a whole character
  EXPECT_EQ(one_line("a\u0085b\u2028c\u00A0d"), "a\\xc2\\x85b\\xe2\\x80\\xa8c\u00A0d");  // NEL, LS; NBSP stays
}

TEST(ByteSizes, ParseDecimalAndBinaryUnits) {
  EXPECT_EQ(parse_byte_size("5GB"), 5'000'000'000u);
  EXPECT_EQ(parse_byte_size("500MB"), 500'000'000u);
  EXPECT_EQ(parse_byte_size("1.5kb"), 1500u);
  EXPECT_EQ(parse_byte_size("2GiB"), 2147483648u);
  EXPECT_EQ(parse_byte_size("123"), 123u);
  EXPECT_FALSE(parse_byte_size("five"));
  EXPECT_FALSE(parse_byte_size("5 parsecs"));
  EXPECT_FALSE(parse_byte_size("0"));
  EXPECT_EQ(human_bytes(65'527'752'704), "65.5 GB");
  EXPECT_EQ(human_count(32'763'876'352), "32.76 B");
}

TEST(ShellQuote, MakesOneWordOfAnything) {
  EXPECT_EQ(shell_quote("plain"), "'plain'");
  EXPECT_EQ(shell_quote("it's a $HOME `x`"), "'it'\\''s a $HOME `x`'");
  const auto echoed = test::run_shell("printf %s " + shell_quote("a 'b' $c"));
  EXPECT_EQ(echoed.output, "a 'b' $c");
}

}  // namespace
}  // namespace rvec
