#include "merge/methods/registry.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <limits>

#include "base/error.hpp"

namespace rvec {
namespace {

const std::vector<const MergeMethod*>& registered() {
  static const std::vector<const MergeMethod*> methods = {
      &task_arithmetic_method(), &magnitude_method(), &ties_method(), &dare_linear_method(), &dare_ties_method(),
      &breadcrumbs_method(), &random_method(), &norm_matched_method(),
  };
  return methods;
}

}  // namespace

const MergeMethod* find_merge_method(std::string_view name) {
  for (const MergeMethod* m : registered()) {
    if (m->name() == name) return m;
  }
  return nullptr;
}

std::vector<std::string_view> merge_method_names() {
  std::vector<std::string_view> names;
  for (const MergeMethod* m : registered()) names.push_back(m->name());
  return names;
}

const MergeMethod& merge_method(std::string_view name) {
  if (const MergeMethod* m = find_merge_method(name)) return *m;
  fail(ErrorKind::kUsage, "unknown merge method \"{}\" (known: {})", name, fmt::join(merge_method_names(), ", "));
}

const MethodParam* find_param(const MergeMethod& method, std::string_view name) {
  for (const auto& p : method.params()) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

void fail_nonfinite_statistic(std::string_view tensor, size_t vector, std::string_view statistic) {
  fail(ErrorKind::kBadInput,
       "tensor {}: vector {} holds NaN or Inf (an input's, or post - pre beyond f32), so its {} is not finite and the "
       "method would spread it over the whole tensor; `rvec check --deep` lists NaN/Inf inputs",
       tensor, vector + 1, statistic);
}

const MethodParam& vector_weight_param() {
  static const MethodParam weight{"weight", 1.0, -std::numeric_limits<float>::max(), std::numeric_limits<float>::max(),
                                  "the vector's share", {}, true};
  return weight;
}

const MethodParam* find_setting_param(const MergeMethod& method, std::string_view name) {
  return name == vector_weight_param().name ? &vector_weight_param() : find_param(method, name);
}

std::string param_value_problem(const MethodParam& param, double value) {
  if (!param.choices.empty()) {
    if (!(value >= 0 && value < static_cast<double>(param.choices.size())) || value != std::floor(value)) {
      return fmt::format("must be one of {} ({})", fmt::join(param.choices, ", "), param.help);
    }
  } else if (!(value >= param.min && value <= param.max)) {
    return fmt::format("= {} is outside [{}, {}] ({})", value, param.min, param.max, param.help);
  } else if (param.whole && value != std::floor(value)) {
    return fmt::format("= {} is not a whole number ({})", value, param.help);
  }
  return "";
}

std::string param_text(const MethodParam& param, double value) {
  if (!param.choices.empty() && value >= 0 && value < static_cast<double>(param.choices.size()) &&
      value == std::floor(value)) {
    return param.choices[static_cast<size_t>(value)];
  }
  return fmt::format("{}", value);
}

MethodParams complete_params(const MergeMethod& method, const MethodParams& given) {
  MethodParams out;
  for (const auto& p : method.params()) out[p.name] = p.default_value;
  for (const auto& [name, value] : given) {
    const MethodParam* declared = find_param(method, name);
    if (!declared) fail(ErrorKind::kUsage, "merge method {} takes no parameter \"{}\"", method.name(), name);
    const std::string problem = param_value_problem(*declared, value);
    if (!problem.empty()) fail(ErrorKind::kUsage, "merge method {}: {} {}", method.name(), name, problem);
    out[name] = value;
  }
  return out;
}

}  // namespace rvec
