#include "base/yaml_reader.hpp"

namespace rvec {

YAML::Node YamlReader::load(const std::string& text) const {
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    bad_input("{}:{}: not valid YAML ({})", origin_, e.mark.line + 1, e.msg);
  }
}

void YamlReader::error(const YAML::Node& node, const std::string& what) const {
  const auto mark = node.Mark();
  if (mark.line >= 0) bad_input("{}:{}: {}", origin_, mark.line + 1, what);
  bad_input("{}: {}", origin_, what);
}

void YamlReader::refuse(const YAML::Node& node, const char* field, const char* expected) const {
  error(node, fmt::format("field \"{}\" must be {}", field, expected));
}

std::vector<double> YamlReader::numbers(const YAML::Node& map, const char* field) const {
  std::vector<double> out;
  const auto node = map[field];
  if (!node) return out;
  if (node.IsScalar()) return {scalar<double>(node, field, "a number or a list of numbers")};
  if (!node.IsSequence()) refuse(node, field, "a number or a list of numbers");
  for (const auto& item : node) out.push_back(scalar<double>(item, field, "a list of numbers"));
  return out;
}

void YamlReader::only(const YAML::Node& map, const std::set<std::string>& known, const char* where) const {
  if (!map.IsMap()) error(map, fmt::format("{} must be a mapping", where));
  for (const auto& entry : map) {
    const auto key = entry.first.as<std::string>();
    if (!known.contains(key)) error(entry.first, fmt::format("unknown field \"{}\" in {}", key, where));
  }
}

}  // namespace rvec
