// The merge-method flags `rvec merge`, `rvec apply` and `rvec check` share:
// --method, --density, --gamma, --seed and --param NAME=VALUE.
#pragma once

#include <CLI/CLI.hpp>

#include <optional>
#include <string>
#include <vector>

#include "merge/param_setting.hpp"

namespace rvec::cli {

struct MethodFlags {
  std::vector<std::string> methods;  // one for merge and apply; several for check
  std::optional<double> density, gamma;
  std::optional<uint64_t> seed;
  std::vector<std::string> params;

  // Registers the flags; `several` makes --method repeatable.
  void add_to(CLI::App* cmd, bool several);
  // The parameters given, as settings.
  ParamSettings settings() const;
};

// "ties: δ = ..., density 0.2, vote unweighted, ...": a method with its merge-wide values.
std::string describe_method(const MergeMethod& method, const MethodParams& values);

}  // namespace rvec::cli
