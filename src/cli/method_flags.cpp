#include "cli/method_flags.hpp"

#include <fmt/format.h>

#include "base/error.hpp"
#include "merge/recipe.hpp"

namespace rvec::cli {

namespace {

// CLI11 leaves an optional unset for `--density ''`: the default would be
// used as if the flag were absent.
const CLI::Validator kNotEmpty(
    [](const std::string& value) { return value.empty() ? std::string("an empty value") : std::string(); }, "", "not empty");

}  // namespace

void MethodFlags::add_to(CLI::App* cmd, bool several) {
  auto* method = cmd->add_option("--method", methods,
                                 "Merge method: task_arithmetic (default), magnitude, ties, dare_linear, dare_ties, "
                                 "breadcrumbs, random, norm_matched (docs/merging.md)")
                     ->check(kNotEmpty);
  if (several) {
    method->description(method->get_description() + "; repeat to compare several");
  } else {
    method->expected(1);
  }
  cmd->add_option("--density", density, "Share of each vector's elements kept (magnitude, ties, dare_*, breadcrumbs)")
      ->check(kNotEmpty);
  cmd->add_option("--gamma", gamma, "breadcrumbs: share of the largest |v| dropped")->check(kNotEmpty);
  cmd->add_option("--seed", seed, "dare_*, random: seed of the draws (DARE's drops, random's shuffle and signs), 0 to 2^53 (default 0)")->check(kNotEmpty);
  cmd->add_option("--param", params, "NAME=VALUE: any other parameter of the method, e.g. vote=weighted (repeatable)");
}

ParamSettings MethodFlags::settings() const {
  ParamSettings out;
  for (const auto& p : params) add_param_assignment(out, p);
  const auto set = [&](const char* name, const auto& value) {
    if (!value) return;
    if (out.contains(name)) fail(ErrorKind::kUsage, "--{0} and --param {0}=... both set {0}; give one", name);
    out.emplace(name, static_cast<double>(*value));
  };
  if (seed && *seed > (uint64_t{1} << 53)) {
    fail(ErrorKind::kUsage, "--seed {} is beyond 2^53 = 9007199254740992 (seeds are kept as JSON and YAML numbers)", *seed);
  }
  set("density", density);
  set("gamma", gamma);
  set("seed", seed);
  return out;
}

std::string describe_method(const MergeMethod& method, const MethodParams& values) {
  std::string params;
  for (const auto& p : method.params()) params += fmt::format(", {} {}", p.name, param_text(p, values.at(p.name)));
  return fmt::format("{}: δ = {}{}", method.name(), method.formula(), params);
}

}  // namespace rvec::cli
