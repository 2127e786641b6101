#include "cli/method_flags.hpp"

#include <fmt/format.h>

#include "merge/recipe.hpp"

namespace rvec::cli {

void MethodFlags::add_to(CLI::App* cmd, bool several) {
  auto* method = cmd->add_option("--method", methods,
                                 "Merge method: task_arithmetic (default), magnitude, ties, dare_linear, dare_ties, "
                                 "breadcrumbs (docs/merging.md)");
  if (several) {
    method->description(method->get_description() + "; repeat to compare several");
  } else {
    method->expected(1);
  }
  cmd->add_option("--density", density, "Share of each vector's elements kept (magnitude, ties, dare_*, breadcrumbs)");
  cmd->add_option("--gamma", gamma, "breadcrumbs: share of the largest |v| dropped");
  cmd->add_option("--seed", seed, "dare_*: seed of the drop decisions (default 0)");
  cmd->add_option("--param", params, "NAME=VALUE: any other parameter of the method, e.g. vote=weighted (repeatable)");
}

ParamSettings MethodFlags::settings() const {
  ParamSettings out;
  for (const auto& p : params) add_param_assignment(out, p);
  if (density) out.insert_or_assign("density", *density);
  if (gamma) out.insert_or_assign("gamma", *gamma);
  if (seed) out.insert_or_assign("seed", static_cast<double>(*seed));
  return out;
}

std::string describe_method(const MergeMethod& method, const MethodParams& values) {
  std::string params;
  for (const auto& p : method.params()) params += fmt::format(", {} {}", p.name, param_text(p, values.at(p.name)));
  return fmt::format("{}: δ = {}{}", method.name(), method.formula(), params);
}

}  // namespace rvec::cli
