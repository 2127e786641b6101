// Strict JSON reading for files that strangers made.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "base/regular_file.hpp"  // read_small_file

namespace rvec {

// Parses `text` as JSON, rejecting duplicate keys in any object (nlohmann
// would silently keep the last one). Errors name `origin`.
nlohmann::json parse_json_strict(std::string_view text, std::string_view origin);

// Reads and strictly parses a JSON file (at most `max_bytes`).
nlohmann::json read_json_file(const std::string& path, uint64_t max_bytes = 256'000'000);

}  // namespace rvec
