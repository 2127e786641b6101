#include "merge/methods/registry.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "base/error.hpp"

namespace rvec {
namespace {

const std::vector<const MergeMethod*>& registered() {
  static const std::vector<const MergeMethod*> methods = {
      &task_arithmetic_method(),
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

MethodParams complete_params(const MergeMethod& method, const MethodParams& given) {
  MethodParams out;
  for (const auto& p : method.params()) out[p.name] = p.default_value;
  for (const auto& [name, value] : given) {
    const auto declared = std::find_if(method.params().begin(), method.params().end(),
                                       [&](const MethodParam& p) { return p.name == name; });
    if (declared == method.params().end()) {
      fail(ErrorKind::kUsage, "merge method {} takes no parameter \"{}\"", method.name(), name);
    }
    if (!(value >= declared->min && value <= declared->max)) {
      fail(ErrorKind::kUsage, "merge method {}: {} = {} is outside [{}, {}] ({})", method.name(), name, value,
           declared->min, declared->max, declared->help);
    }
    out[name] = value;
  }
  return out;
}

}  // namespace rvec
