// A merge parameter as a recipe gives it: one value, or a value that varies
// over the tensors, written the way mergekit writes them.
//
//   0.2                  one number
//   weighted             one word (a choice such as `vote: weighted`; YAML true/false are words too)
//   [0.1, 0.5, 0.9]      a gradient over the layers
//   - filter: mlp        conditions, tried in order: the first whose filter occurs
//     value: 0.5         in the tensor's name (no filter, or "*": any tensor) gives
//   - value: 0.2         the value, a number or a gradient; none matching: no value
//
// A tensor of layer L of a model with N layers sits at t = L / (N - 1)
// (t = 1 when N = 1); tensors outside the layers (the embeddings, the final
// norm, the head) sit at t = 0, as in mergekit since v0.1.2 (plan.py:
// plan_module reads pre_weights and post_weights at t = 0; before, its
// post_weights were at t = 1). A gradient [g_0, ..., g_m] gives, in double
// arithmetic,
//   s = t * m,  i = floor(s),  f = s - i,  value = (1 - f) * g_i + f * g_min(i + 1, m).
//
// Values are immutable; thread-safe.
#pragma once

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/yaml_reader.hpp"
#include "merge/method.hpp"

namespace rvec {

class ParamSetting {
 public:
  struct Condition;
  using Gradient = std::vector<double>;

  ParamSetting(double value) : value_(value) {}  // NOLINT: a number is a setting
  static ParamSetting word(std::string text);
  static ParamSetting gradient(Gradient values);
  static ParamSetting conditions(std::vector<Condition> conditions);

  // One number or word for every tensor.
  bool is_constant() const;
  // The value for a tensor named `tensor` at layer position t, as a number
  // for `param` (a word becomes the index of that choice); nothing when no
  // condition matches. Usage error naming `param` for a word it does not take.
  std::optional<double> value_at(const MethodParam& param, std::string_view tensor, double t) const;

  // This setting, or, for conditions none of which matches every tensor,
  // the conditions followed by `value` for the tensors they leave out.
  ParamSetting or_else(double value) const;

  nlohmann::ordered_json to_json() const;
  void emit(YAML::Emitter& out) const;

 private:
  explicit ParamSetting(std::variant<double, std::string, Gradient, std::vector<Condition>> value)
      : value_(std::move(value)) {}
  std::variant<double, std::string, Gradient, std::vector<Condition>> value_;
};

struct ParamSetting::Condition {
  std::optional<std::string> filter;  // absent or "*": every tensor
  ParamSetting value;                 // a number, word or gradient
};

// Settings by parameter name ("weight", "density", ...).
using ParamSettings = std::map<std::string, ParamSetting>;

// Reads a setting of `param` from a recipe (any of the forms above), each
// value checked against the parameter; errors name the line and the field.
ParamSetting read_param_setting(const YamlReader& y, const YAML::Node& node, const MethodParam& param);

nlohmann::ordered_json settings_json(const ParamSettings& settings);
// Appends `name: setting` pairs to a YAML map being emitted.
void emit_settings(YAML::Emitter& out, const ParamSettings& settings);

// A parameter's value as written (in a recipe, a mergekit config or
// --param NAME=VALUE): a number, a word, or refused with a reason. Numbers
// are decimal, as JSON writes them or with a leading "+" ("0.2", "-1",
// "+.5", "1e-3", "00.5"; not " 1", "0x10", "1_000", "inf", which stay
// words). Refused are integers written with a leading zero ("010", octal 8
// to YAML 1.1 and so to mergekit) and numbers beyond 2^53, where a double no
// longer holds every integer (a seed of 2^53 + 1 would be 2^53).
struct ScalarText {
  std::optional<double> number;  // when a number
  std::string refusal;           // when refused: why
};
ScalarText read_scalar_text(std::string_view text);

// The layer position t of a tensor (see above); `layers` is the model's layer count.
double layer_position(std::string_view tensor, uint64_t layers);

}  // namespace rvec
