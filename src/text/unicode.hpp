// Unicode helpers over UTF-8 strings (utf8proc).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace rvec {

// Canonical composition (NFC), as Qwen's tokenizer normalises its input.
// `text` must be valid UTF-8.
std::string nfc(std::string_view text);
// Compatibility composition (NFKC): full-width digits become ASCII, etc.
std::string nfkc(std::string_view text);

// Length of the longest prefix of `bytes` that ends on a character boundary:
// a multi-byte sequence cut off at the end is left out (a streaming decoder
// holds it back until its remaining bytes arrive).
size_t complete_utf8_prefix(std::string_view bytes);

// Characters that start in `bytes` (UTF-8, possibly a piece of a text): its
// bytes that do not continue a character. For valid UTF-8, its code points.
size_t utf8_character_starts(std::string_view bytes);

// `bytes` with every ill-formed sequence replaced by U+FFFD.
std::string replace_invalid_utf8(std::string_view bytes);

// Appends the UTF-8 encoding of code point `cp`.
void append_utf8(std::string& out, char32_t cp);

}  // namespace rvec
