#include "base/json.hpp"

#include <set>
#include <vector>

#include "base/error.hpp"
#include "base/text.hpp"

namespace rvec {

nlohmann::json parse_json_strict(std::string_view text, std::string_view origin) {
  if (const auto bad = first_invalid_utf8(text)) {
    bad_input("{}: not valid UTF-8 at byte {}", origin, *bad);
  }
  std::vector<std::set<std::string>> keys_per_object;
  std::string duplicate;
  auto callback = [&](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    if (event == Event::object_start) keys_per_object.emplace_back();
    if (event == Event::object_end && !keys_per_object.empty()) keys_per_object.pop_back();
    if (event == Event::key && !keys_per_object.empty()) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!keys_per_object.back().insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  nlohmann::json result;
  try {
    result = nlohmann::json::parse(text.begin(), text.end(), callback);
  } catch (const nlohmann::json::exception& e) {
    bad_input("{}: not valid JSON ({})", origin, json_error_reason(e.what()));
  }
  if (!duplicate.empty()) bad_input("{}: key \"{}\" appears twice in one object", origin, printable(duplicate));
  return result;
}

std::optional<uint64_t> non_negative_integer(const nlohmann::json& value) {
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  if (value.is_number_integer() && value.get<int64_t>() >= 0) return static_cast<uint64_t>(value.get<int64_t>());
  return std::nullopt;
}

nlohmann::json read_json_file(const std::string& path, uint64_t max_bytes) {
  return parse_json_strict(read_small_file(path, max_bytes), path);
}

}  // namespace rvec
