// Reading YAML files that people wrote by hand (recipes): every complaint
// names the file and the line, and reads like "recipe.yaml:6: unknown field
// "benchmark" in a sweep recipe".
#pragma once

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "base/error.hpp"
#include "base/text.hpp"

namespace rvec {

class YamlReader {
 public:
  // `origin` names the file in every error.
  explicit YamlReader(std::string origin) : origin_(std::move(origin)) {}

  // Parses `text`: one YAML document in UTF-8, no mapping with the same key
  // twice; "ORIGIN:LINE: not valid YAML (...)" and the like when it is not.
  YAML::Node load(const std::string& text) const;

  [[noreturn]] void error(const YAML::Node& node, const std::string& what) const;
  // error(node, "field "FIELD" must be EXPECTED").
  [[noreturn]] void refuse(const YAML::Node& node, const char* field, const char* expected) const;

  // `node` as a T; "field "FIELD" must be EXPECTED" when it is not one.
  // Integers are plain decimal in T's range (yaml-cpp alone would read "010"
  // as octal 8 and "0x10" as 16); floating-point numbers are finite (no .inf)
  // and not integers with a leading zero (octal 8 to PyYAML, 10 to yaml-cpp);
  // booleans are the words PyYAML reads as booleans, unquoted or tagged
  // !!bool (true, yes, on, false, no, off, in lower case, capitalised or
  // upper case; yaml-cpp alone would also take y and n, which PyYAML reads as
  // text).
  template <typename T>
  T scalar(const YAML::Node& node, const char* field, const char* expected) const {
    if (!node.IsScalar()) refuse(node, field, expected);
    if constexpr (std::is_same_v<T, bool>) {
      const std::optional<bool> value = boolean(node);
      if (!value) refuse(node, field, expected);
      return *value;
    } else if constexpr (std::is_integral_v<T>) {
      using Wide = std::conditional_t<std::is_signed_v<T>, int64_t, uint64_t>;
      std::optional<Wide> value;
      if constexpr (std::is_signed_v<T>) value = parse_decimal_i64(node.Scalar());
      if constexpr (!std::is_signed_v<T>) value = parse_decimal_u64(node.Scalar());
      if (!value || !std::in_range<T>(*value)) refuse(node, field, expected);
      return static_cast<T>(*value);
    } else {
      if constexpr (std::is_floating_point_v<T>) refuse_octal(node, field);
      try {
        const T value = node.as<T>();
        if constexpr (std::is_floating_point_v<T>) {
          if (!std::isfinite(value)) refuse(node, field, expected);
        }
        return value;
      } catch (const YAML::Exception&) {
        refuse(node, field, expected);
      }
    }
  }

  // Sets `out` from map[field] when the field is present.
  template <typename T>
  void read(const YAML::Node& map, const char* field, T& out, const char* expected) const {
    if (const auto node = map[field]) out = scalar<T>(node, field, expected);
  }

  // `node` as text the way PyYAML reads it: a quoted, block or !!str scalar,
  // or an unquoted one that YAML 1.1 does not read as a number, a boolean or
  // a date (`filter: 0` is refused with a hint to quote it; mergekit's
  // pydantic refuses it too).
  std::string text(const YAML::Node& node, const char* field, const char* expected) const;

  // Refuses `node` when it is an integer written with a leading zero.
  void refuse_octal(const YAML::Node& node, const char* field) const;

  // map[field] as a number or a non-empty list of numbers; empty when absent.
  std::vector<double> numbers(const YAML::Node& map, const char* field) const;

  // Refuses a non-mapping and any key not in `known`; `where` says what the mapping is.
  void only(const YAML::Node& map, const std::set<std::string>& known, const char* where) const;

 private:
  void refuse_duplicate_keys(const YAML::Node& root) const;
  static std::optional<bool> boolean(const YAML::Node& node);

  std::string origin_;
};

}  // namespace rvec
