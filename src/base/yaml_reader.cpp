#include "base/yaml_reader.hpp"

#include <algorithm>
#include <map>
#include <string_view>

#include "base/regex.hpp"

namespace rvec {

namespace {

// Nodes a recipe may hold, counted as a walk meets them (an alias is met
// once per use, so an alias bomb stops here instead of expanding).
constexpr size_t kMostNodes = 100'000;

size_t line_of(std::string_view text, size_t offset) {
  return 1 + static_cast<size_t>(std::count(text.begin(), text.begin() + static_cast<ptrdiff_t>(offset), '\n'));
}

// PyYAML's (6.0) resolver patterns for int, float and timestamp (YAML
// 1.1): an unquoted scalar matching one is not text to PyYAML, so to mergekit.
bool pyyaml_non_text(const std::string& scalar) {
  static const Regex kPattern(
      R"(^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)"
      R"(|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)"
      R"(|[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?)"
      R"(|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))"
      R"(|[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9])"
      R"(|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9])"
      R"((?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$)",
      "PyYAML's int, float and timestamp patterns");
  return kPattern.matches_somewhere(scalar);  // load() checked the text is UTF-8
}

// yaml-cpp's tags: "?" for a plain scalar, "!" for a quoted or block one.
constexpr std::string_view kPlainTag = "?", kQuotedTag = "!";
constexpr std::string_view kStrTag = "tag:yaml.org,2002:str", kBoolTag = "tag:yaml.org,2002:bool";

}  // namespace

YAML::Node YamlReader::load(const std::string& text) const {
  if (const auto bad = first_invalid_utf8(text)) {
    bad_input("{}:{}: byte {} is not valid UTF-8 (a YAML file is UTF-8 text)", origin_, line_of(text, *bad), *bad);
  }
  std::vector<YAML::Node> documents;
  try {
    documents = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    bad_input("{}:{}: not valid YAML ({})", origin_, e.mark.line + 1, printable(e.msg));
  }
  if (documents.size() > 1) {
    error(documents[1], "a second YAML document (after \"---\"): rvec reads one document per file");
  }
  if (documents.empty()) return YAML::Node();
  refuse_duplicate_keys(documents[0]);
  return documents[0];
}

// Every mapping's keys are distinct: yaml-cpp keeps the first of two equal
// keys and PyYAML the last, so a duplicate would mean different things to
// rvec and to the tools the file came from. Likewise a merge key (<<),
// which PyYAML expands and yaml-cpp keeps as a key named "<<".
void YamlReader::refuse_duplicate_keys(const YAML::Node& root) const {
  std::vector<YAML::Node> pending{root};
  size_t met = 0;
  while (!pending.empty()) {
    const YAML::Node node = pending.back();
    pending.pop_back();
    if (++met > kMostNodes) error(node, fmt::format("more than {} YAML nodes (aliases expanding?)", kMostNodes));
    if (node.IsSequence()) {
      for (const auto& item : node) pending.push_back(item);
    } else if (node.IsMap()) {
      std::map<std::string, int> seen;  // key -> its line
      for (const auto& entry : node) {
        if (!entry.first.IsScalar()) error(entry.first, "a key must be a plain word, not a list, mapping or null");
        if (entry.first.Scalar() == "<<" && entry.first.Tag() != "!") {  // PyYAML merges; yaml-cpp would not
          error(entry.first, "a YAML merge key (<<) is not supported here: write the keys out");
        }
        const auto [at, fresh] = seen.try_emplace(entry.first.Scalar(), entry.first.Mark().line + 1);
        if (!fresh) {
          error(entry.first, fmt::format("duplicate key \"{}\" (first on line {})", printable(at->first), at->second));
        }
        pending.push_back(entry.second);
      }
    }
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

void YamlReader::refuse_octal(const YAML::Node& node, const char* field) const {
  if (!has_octal_leading_zero(node.Scalar())) return;
  error(node, fmt::format("field \"{}\": \"{}\" has a leading zero, which YAML 1.1 (PyYAML, so mergekit) reads as "
                          "octal; write the number without it",
                          field, printable(node.Scalar())));
}

std::optional<bool> YamlReader::boolean(const YAML::Node& node) {
  if (node.Tag() != kPlainTag && node.Tag() != kBoolTag) return std::nullopt;  // quoted or !!str: text to PyYAML
  static const std::map<std::string_view, bool> kWords = {
      {"true", true},   {"True", true},   {"TRUE", true},   {"yes", true}, {"Yes", true}, {"YES", true},
      {"on", true},     {"On", true},     {"ON", true},     {"false", false}, {"False", false}, {"FALSE", false},
      {"no", false},    {"No", false},    {"NO", false},    {"off", false}, {"Off", false}, {"OFF", false}};
  const auto word = kWords.find(node.Scalar());
  if (word == kWords.end()) return std::nullopt;
  return word->second;
}

std::string YamlReader::text(const YAML::Node& node, const char* field, const char* expected) const {
  if (!node.IsScalar()) refuse(node, field, expected);
  if (node.Tag() == kQuotedTag || node.Tag() == kStrTag) return node.Scalar();
  if (node.Tag() != kPlainTag) refuse(node, field, expected);  // !!int 0 and the like
  if (boolean(node) || pyyaml_non_text(node.Scalar())) {
    error(node, fmt::format("field \"{}\" must be text, and YAML reads {} as a number, a boolean or a date: quote it "
                            "(\"{}\")",
                            field, printable(node.Scalar()), printable(node.Scalar())));
  }
  return node.Scalar();
}

std::vector<double> YamlReader::numbers(const YAML::Node& map, const char* field) const {
  std::vector<double> out;
  const auto node = map[field];
  if (!node) return out;
  if (node.IsScalar()) return {scalar<double>(node, field, "a number or a list of numbers")};
  if (!node.IsSequence()) refuse(node, field, "a number or a list of numbers");
  if (node.size() == 0) error(node, fmt::format("field \"{}\" is an empty list", field));
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
