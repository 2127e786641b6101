// Strict JSON reading for files that strangers made.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "base/regular_file.hpp"  // read_small_file

namespace rvec {

// Parses `text` as JSON, rejecting duplicate keys in any object (nlohmann
// would silently keep the last one). Errors name `origin`.
nlohmann::json parse_json_strict(std::string_view text, std::string_view origin);

// Why nlohmann refused a text, from its exception's what(), without the
// exception's id and the position (callers name the place themselves):
//   "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error ..." -> "syntax error ..."
//   "[json.exception.out_of_range.406] number overflow parsing '1e400'" -> "number overflow parsing '1e400'"
// Inline, so that code which only parses (the fuzz targets) needs no other file.
inline std::string json_error_reason(std::string_view what) {
  if (what.starts_with("[json.exception.")) {
    if (const auto end = what.find("] "); end != std::string_view::npos) what.remove_prefix(end + 2);
  }
  if (what.starts_with("parse error")) {
    if (const auto colon = what.find(": "); colon != std::string_view::npos) what.remove_prefix(colon + 2);
  }
  return std::string(what);
}

// The value of a JSON integer that is >= 0, whether nlohmann stored it as
// unsigned (parsed text) or signed (built in code); nullopt for anything else.
std::optional<uint64_t> non_negative_integer(const nlohmann::json& value);

// Reads and strictly parses a JSON file (at most `max_bytes`).
nlohmann::json read_json_file(const std::string& path, uint64_t max_bytes = 256'000'000);

}  // namespace rvec
