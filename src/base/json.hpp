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

// The value of a JSON integer that is >= 0, whether nlohmann stored it as
// unsigned (parsed text) or signed (built in code); nullopt for anything else.
std::optional<uint64_t> non_negative_integer(const nlohmann::json& value);

// Reads and strictly parses a JSON file (at most `max_bytes`).
nlohmann::json read_json_file(const std::string& path, uint64_t max_bytes = 256'000'000);

}  // namespace rvec
