#include "merge/param_setting.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <cmath>

#include "base/error.hpp"
#include "base/text.hpp"
#include "hf/tensor_names.hpp"

namespace rvec {
namespace {

// A whole number as an integer (a seed reads 7, not 7.0), exact up to 2^53;
// -0.0 stays a double, as output fingerprints hash it.
nlohmann::ordered_json number_json(double v) {
  constexpr double kExact = 9007199254740992.0;  // 2^53
  const bool negative_zero = v == 0 && std::signbit(v);
  if (std::trunc(v) == v && std::fabs(v) <= kExact && !negative_zero) return static_cast<int64_t>(v);
  return v;
}

// Overloaded lambdas for std::visit.
template <class... Fs>
struct Visitor : Fs... {
  using Fs::operator()...;
};

double interpolate(const ParamSetting::Gradient& g, double t) {
  const double s = t * static_cast<double>(g.size() - 1);
  const size_t i = static_cast<size_t>(s);
  const size_t next = std::min(g.size() - 1, i + 1);
  const double f = s - static_cast<double>(i);
  return (1 - f) * g[i] + f * g[next];
}

std::optional<double> choice_index(const MethodParam& param, const std::string& word) {
  for (size_t i = 0; i < param.choices.size(); ++i) {
    if (param.choices[i] == word) return static_cast<double>(i);
  }
  return std::nullopt;
}

// Why `word`, not one of the parameter's choices, is refused.
std::string word_problem(const MethodParam& param, const std::string& word) {
  if (param.choices.empty()) return fmt::format("takes a number, not \"{}\"", printable(word));
  return fmt::format("is one of {}, not \"{}\"", fmt::join(param.choices, ", "), printable(word));
}

double word_value(const MethodParam& param, const std::string& word) {
  if (const auto index = choice_index(param, word)) return *index;
  fail(ErrorKind::kUsage, "parameter {} {}", param.name, word_problem(param, word));
}

// The number `text` is, or an error naming `param` when it is refused or not
// one of its values.
std::optional<double> number_in(const YamlReader& y, const YAML::Node& node, const MethodParam& param) {
  const ScalarText read = read_scalar_text(node.Scalar());
  if (!read.refusal.empty()) y.error(node, fmt::format("field \"{}\": {}", param.name, read.refusal));
  if (read.number) {
    const std::string problem = param_value_problem(param, *read.number);
    if (!problem.empty()) y.error(node, fmt::format("field \"{}\" {}", param.name, problem));
  }
  return read.number;
}

ParamSetting read_scalar_or_gradient(const YamlReader& y, const YAML::Node& node, const MethodParam& param) {
  const std::string& field = param.name;
  if (node.IsScalar()) {
    const std::string text = node.Scalar();
    if (const auto number = number_in(y, node, param)) return *number;
    if (text.empty()) y.error(node, fmt::format("field \"{}\" is empty", field));
    if (!choice_index(param, text)) y.error(node, fmt::format("field \"{}\" {}", field, word_problem(param, text)));
    return ParamSetting::word(text);
  }
  if (!node.IsSequence() || node.size() == 0) {
    y.error(node, fmt::format("field \"{}\" must be a number, a word, a list of numbers (a gradient over the layers) "
                              "or a list of {{filter, value}} conditions",
                              field));
  }
  ParamSetting::Gradient values;
  for (const auto& item : node) {
    const std::optional<double> value = item.IsScalar() ? number_in(y, item, param) : std::nullopt;
    if (!value) y.error(item, fmt::format("field \"{}\": a gradient is a list of numbers", field));
    values.push_back(*value);
  }
  return ParamSetting::gradient(std::move(values));
}

}  // namespace

ParamSetting ParamSetting::word(std::string text) {
  return ParamSetting(std::variant<double, std::string, Gradient, std::vector<Condition>>(std::move(text)));
}

ParamSetting ParamSetting::gradient(Gradient values) {
  if (values.empty()) fail(ErrorKind::kUsage, "a gradient needs at least one value");
  if (values.size() == 1) return values.front();
  return ParamSetting(std::variant<double, std::string, Gradient, std::vector<Condition>>(std::move(values)));
}

ParamSetting ParamSetting::conditions(std::vector<Condition> conditions) {
  return ParamSetting(std::variant<double, std::string, Gradient, std::vector<Condition>>(std::move(conditions)));
}

bool ParamSetting::is_constant() const {
  return std::holds_alternative<double>(value_) || std::holds_alternative<std::string>(value_);
}

std::optional<double> ParamSetting::value_at(const MethodParam& param, std::string_view tensor, double t) const {
  return std::visit(
      Visitor{[](double v) -> std::optional<double> { return v; },
              [&](const std::string& w) -> std::optional<double> { return word_value(param, w); },
              [&](const Gradient& g) -> std::optional<double> { return interpolate(g, t); },
              [&](const std::vector<Condition>& conditions) -> std::optional<double> {
                for (const auto& c : conditions) {
                  if (!c.filter || *c.filter == "*" || tensor.find(*c.filter) != std::string_view::npos) {
                    return c.value.value_at(param, tensor, t);
                  }
                }
                return std::nullopt;
              }},
      value_);
}

ParamSetting ParamSetting::or_else(double value) const {
  const auto* conditions = std::get_if<std::vector<Condition>>(&value_);
  if (!conditions) return *this;
  const bool covers_all = std::ranges::any_of(*conditions, [](const Condition& c) { return !c.filter || *c.filter == "*"; });
  if (covers_all) return *this;
  std::vector<Condition> extended = *conditions;
  extended.push_back({std::nullopt, value});
  return ParamSetting::conditions(std::move(extended));
}

nlohmann::ordered_json ParamSetting::to_json() const {
  return std::visit(Visitor{[](double v) { return number_json(v); },
                            [](const std::string& w) { return nlohmann::ordered_json(w); },
                            [](const Gradient& g) {
                              auto out = nlohmann::ordered_json::array();
                              for (const double v : g) out.push_back(number_json(v));
                              return out;
                            },
                            [](const std::vector<Condition>& conditions) {
                              auto out = nlohmann::ordered_json::array();
                              for (const auto& c : conditions) {
                                nlohmann::ordered_json item = nlohmann::ordered_json::object();
                                if (c.filter) item["filter"] = *c.filter;
                                item["value"] = c.value.to_json();
                                out.push_back(item);
                              }
                              return out;
                            }},
                    value_);
}

void ParamSetting::emit(YAML::Emitter& out) const {
  std::visit(Visitor{[&](double v) { out << v; }, [&](const std::string& w) { out << w; },
                     [&](const Gradient& g) { out << YAML::Flow << g; },
                     [&](const std::vector<Condition>& conditions) {
                       out << YAML::BeginSeq;
                       for (const auto& c : conditions) {
                         out << YAML::BeginMap;
                         if (c.filter) out << YAML::Key << "filter" << YAML::Value << YAML::DoubleQuoted << *c.filter;
                         out << YAML::Key << "value" << YAML::Value;
                         c.value.emit(out);
                         out << YAML::EndMap;
                       }
                       out << YAML::EndSeq;
                     }},
             value_);
}

ParamSetting read_param_setting(const YamlReader& y, const YAML::Node& node, const MethodParam& param) {
  const std::string& field = param.name;
  if (!node.IsSequence() || node.size() == 0 || !node[0].IsMap()) return read_scalar_or_gradient(y, node, param);
  std::vector<ParamSetting::Condition> conditions;
  for (const auto& item : node) {
    y.only(item, {"filter", "value"}, "a parameter condition");
    ParamSetting::Condition c{std::nullopt, 0.0};
    if (const auto filter = item["filter"]) {
      if (!filter.IsNull()) c.filter = y.text(filter, "filter", "a part of tensor names");
    }
    if (!item["value"]) y.error(item, fmt::format("a condition of \"{}\" needs \"value\"", field));
    c.value = read_scalar_or_gradient(y, item["value"], param);
    conditions.push_back(std::move(c));
  }
  return ParamSetting::conditions(std::move(conditions));
}

nlohmann::ordered_json settings_json(const ParamSettings& settings) {
  auto out = nlohmann::ordered_json::object();
  for (const auto& [name, setting] : settings) out[name] = setting.to_json();
  return out;
}

void emit_settings(YAML::Emitter& out, const ParamSettings& settings) {
  for (const auto& [name, setting] : settings) {
    out << YAML::Key << name << YAML::Value;
    setting.emit(out);
  }
}

ScalarText read_scalar_text(std::string_view text) {
  ScalarText out;
  const bool signed_text = text.starts_with('-') || text.starts_with('+');
  const std::string_view digits = text.substr(signed_text ? 1 : 0);
  const bool integer = !digits.empty() && std::ranges::all_of(digits, [](char c) { return c >= '0' && c <= '9'; });
  if (has_octal_leading_zero(text)) {
    out.refusal = fmt::format("\"{}\" has a leading zero, which YAML 1.1 (PyYAML, so mergekit) reads as octal; "
                              "write the number without it",
                              printable(text));
    return out;
  }
  // from_chars takes no '+'; after one, the number must start right away.
  const std::string_view number = text.starts_with('+') ? digits : text;
  if (text.starts_with('+') && (digits.empty() || digits[0] == '-' || digits[0] == '+')) return out;
  double value = 0;
  const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
  if (ec != std::errc() || end != number.data() + number.size() || !std::isfinite(value)) {
    if (integer) out.refusal = fmt::format("{} is too large an integer", printable(text));
    return out;
  }
  // 2^53 itself only as written: 9007199254740993, 9.007199254740993e15 and
  // 9007199254740992.5 all read as 2^53.
  const double limit = 9007199254740992.0;
  if (std::fabs(value) > limit || (std::fabs(value) == limit && digits != "9007199254740992")) {
    out.refusal = fmt::format("{} is beyond 2^53 = 9007199254740992, where a double no longer holds every integer",
                              printable(text));
    return out;
  }
  out.number = value;
  return out;
}

double layer_position(std::string_view tensor, uint64_t layers) {
  const auto layer = layer_index(tensor);
  if (!layer) return 0;
  if (layers <= 1) return 1;
  return static_cast<double>(*layer) / static_cast<double>(layers - 1);
}

}  // namespace rvec
