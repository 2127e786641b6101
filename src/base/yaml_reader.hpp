// Reading YAML files that people wrote by hand (recipes): every complaint
// names the file and the line, and reads like "recipe.yaml:6: unknown field
// "benchmark" in a sweep recipe".
#pragma once

#include <yaml-cpp/yaml.h>

#include <set>
#include <string>
#include <vector>

#include "base/error.hpp"

namespace rvec {

class YamlReader {
 public:
  // `origin` names the file in every error.
  explicit YamlReader(std::string origin) : origin_(std::move(origin)) {}

  // Parses `text`; "ORIGIN:LINE: not valid YAML (...)" when it is not.
  YAML::Node load(const std::string& text) const;

  [[noreturn]] void error(const YAML::Node& node, const std::string& what) const;

  // `node` as a T; "field "FIELD" must be EXPECTED" when it is not one.
  template <typename T>
  T scalar(const YAML::Node& node, const char* field, const char* expected) const {
    if (!node.IsScalar()) error(node, fmt::format("field \"{}\" must be {}", field, expected));
    try {
      return node.as<T>();
    } catch (const YAML::Exception&) {
      error(node, fmt::format("field \"{}\" must be {}", field, expected));
    }
  }

  // Sets `out` from map[field] when the field is present.
  template <typename T>
  void read(const YAML::Node& map, const char* field, T& out, const char* expected) const {
    if (const auto node = map[field]) out = scalar<T>(node, field, expected);
  }

  // map[field] as a number or a list of numbers; empty when absent.
  std::vector<double> numbers(const YAML::Node& map, const char* field) const;

  // Refuses a non-mapping and any key not in `known`; `where` says what the mapping is.
  void only(const YAML::Node& map, const std::set<std::string>& known, const char* where) const;

 private:
  std::string origin_;
};

}  // namespace rvec
