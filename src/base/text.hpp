// Small text helpers shared by validation code and messages.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace rvec {

// Byte offset of the first byte that is not well-formed UTF-8, if any.
std::optional<size_t> first_invalid_utf8(std::string_view text);

// True if `text` holds a C0 control, DEL, or a C1 control (U+0080..U+009F).
bool has_control_character(std::string_view text);

// `text` with control characters (C0, DEL, C1, U+2028, U+2029), quotes,
// backslashes and bytes that are not UTF-8 shown as \xNN, so a message stays
// one line of valid UTF-8.
std::string printable(std::string_view text);

// A message as one line of valid UTF-8 for a terminal: control characters
// (as above) and bytes that are not UTF-8 shown as \xNN (quotes kept, unlike
// printable), and at most `most` bytes, the rest cut at a character with
// "... (N more bytes)".
std::string one_line(std::string_view text, size_t most = 2000);

// "[152064, 5120]"
std::string shape_string(std::span<const uint64_t> shape);

// "65.5 GB" (decimal units, as Hugging Face sizes shards).
std::string human_bytes(uint64_t bytes);

// "158.3 K", "1.54 B" parameters.
std::string human_count(uint64_t count);

// `text` as one /bin/sh word: 'it'\''s' for it's.
std::string shell_quote(std::string_view text);

// `text` as a plain decimal integer: digits only, with a leading '-' for the
// signed form; nullopt for anything else or a value outside 64 bits. (CLI11
// and yaml-cpp read integers in base 0: "010" is octal 8 there and "0x10" is
// 16; here "010" is 10 and "0x10", "+1", " 1" are refused.)
std::optional<uint64_t> parse_decimal_u64(std::string_view text);
std::optional<int64_t> parse_decimal_i64(std::string_view text);

// An integer written with a leading zero ("010", "-00", "+07"): octal to YAML
// 1.1 (PyYAML, so mergekit), decimal to JSON readers, so refused where it
// could be either.
bool has_octal_leading_zero(std::string_view text);

// `text` safe inside HTML or XML text and quoted attributes: & < > " ' escaped.
std::string xml_escape(std::string_view text);

// Parses "5GB", "500MB", "10KB", "123" (bytes); decimal units, also "GiB"/"MiB".
std::optional<uint64_t> parse_byte_size(std::string_view text);

}  // namespace rvec
