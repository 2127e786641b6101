#include <fmt/format.h>


#include "base/error.hpp"
#include "base/regular_file.hpp"
#include "base/text.hpp"
#include "cli/commands.hpp"
#include "cli/layer_rows.hpp"
#include "merge/vector_stats.hpp"

namespace rvec::cli {
namespace {

struct StatsOptions {
  std::string vector, compare, pre, post, plot;
  bool json = false;
};

nlohmann::ordered_json stats_json(const VectorStats& s, double total_sq, bool compared) {
  nlohmann::ordered_json out = {{"elements", s.elements}, {"norm", s.norm()},
                                {"share", total_sq > 0 ? s.sum_sq / total_sq : 0.0}};
  nlohmann::ordered_json sparsity = nlohmann::ordered_json::object();
  for (size_t t = 0; t < kSparsityThresholds.size(); ++t) {
    sparsity[fmt::format("{:g}", kSparsityThresholds[t])] =
        s.elements ? static_cast<double>(s.below[t]) / static_cast<double>(s.elements) : 0.0;
  }
  out["fraction_at_most"] = sparsity;
  if (compared) out["cosine"] = s.cosine();
  return out;
}

nlohmann::ordered_json report_json(const VectorReport& r) {
  const double total = r.total.sum_sq;
  nlohmann::ordered_json out;
  out["total"] = stats_json(r.total, total, r.compared);
  out["by_kind"] = nlohmann::ordered_json::object();
  for (const auto& [kind, s] : r.by_kind) out["by_kind"][kind] = stats_json(s, total, r.compared);
  out["by_layer"] = nlohmann::ordered_json::array();
  for (const auto& [layer, s] : r.by_layer) {
    auto row = stats_json(s, total, r.compared);
    row["layer"] = layer;
    out["by_layer"].push_back(row);
  }
  out["tensors"] = nlohmann::ordered_json::array();
  for (const auto& [name, s] : r.tensors) {
    auto row = stats_json(s, total, r.compared);
    row["name"] = name;
    out["tensors"].push_back(row);
  }
  return out;
}

void print_report(const VectorReport& r, const std::string& what) {
  fmt::print("vector  {}  ||v|| = {:.6g} over {} elements\n", what, r.total.norm(), r.total.elements);
  fmt::print("{:<11} {:>11} {:>7}  fraction with |v| <= 1e-6 / 1e-5 / 1e-4 / 1e-3{}\n", "kind", "norm", "share",
             r.compared ? "   cosine" : "");
  for (const auto& [kind, s] : r.by_kind) {
    std::string sparsity;
    for (size_t t = 0; t < kSparsityThresholds.size(); ++t) {
      sparsity += fmt::format(" {:.3f}", s.elements ? static_cast<double>(s.below[t]) / static_cast<double>(s.elements) : 0.0);
    }
    fmt::print("{:<11} {:>11.5g} {:>6.1f}% {}{}\n", kind, s.norm(), 100 * s.sum_sq / std::max(r.total.sum_sq, 1e-300),
               sparsity, r.compared ? fmt::format("  {:+.4f}", s.cosine()) : "");
  }
  std::map<int64_t, std::string> norms, cosines;
  for (const auto& [layer, s] : r.by_layer) {
    norms[layer] = fmt::format("{:.3g}", s.norm());
    cosines[layer] = fmt::format("{:+.2f}", s.cosine());
  }
  print_layer_rows("norm  ", norms);
  if (r.compared) print_layer_rows("cosine", cosines);
}

}  // namespace

void add_stats(CLI::App& app, int& exit_code) {
  auto opts = std::make_shared<StatsOptions>();
  auto* cmd = app.add_subcommand("stats", "Norms, shares, sparsity and per-layer plot of a reasoning vector");
  cmd->add_option("vector", opts->vector, "A vector folder from `rvec extract` (or give --pre and --post)");
  cmd->add_option("--pre", opts->pre, "Compute the vector on the fly as post - pre");
  cmd->add_option("--post", opts->post, "Compute the vector on the fly as post - pre");
  cmd->add_option("--compare", opts->compare, "A second vector folder: per-layer cosine similarity with it");
  cmd->add_option("--plot", opts->plot, "Write an SVG bar chart of per-layer norms (and cosines) here");
  cmd->add_flag("--json", opts->json, "Print one JSON object for scripts");
  cmd->footer(
      "Examples:\n"
      "  rvec stats s1-vector --plot s1-vector-layers.svg\n"
      "  rvec stats --pre Qwen2.5-32B-Instruct --post s1-32B\n"
      "  rvec stats s1-vector --compare control-vector --json");
  cmd->callback([opts, &exit_code] {
    const bool on_the_fly = !opts->pre.empty() || !opts->post.empty();
    if (on_the_fly == !opts->vector.empty()) {
      fail(ErrorKind::kUsage, "give either a vector folder or both --pre and --post");
    }
    if (on_the_fly && (opts->pre.empty() || opts->post.empty())) fail(ErrorKind::kUsage, "--pre and --post go together");
    std::unique_ptr<ModelFolder> vector, pre, other;
    VectorSource source;
    if (on_the_fly) {
      vector = ModelFolder::open(opts->post);
      pre = ModelFolder::open(opts->pre);
      source = {vector.get(), pre.get()};
    } else {
      vector = ModelFolder::open(opts->vector);
      source = {vector.get(), nullptr};
    }
    VectorSource second;
    if (!opts->compare.empty()) {
      other = ModelFolder::open(opts->compare);
      second = {other.get(), nullptr};
    }
    const VectorReport report = analyse_vector(source, other ? &second : nullptr);
    const std::string what = on_the_fly ? fmt::format("{} - {}", opts->post, opts->pre) : opts->vector;
    if (!opts->plot.empty()) {
      write_regular_file(opts->plot, layer_norms_svg(report, "per-layer norm of " + what));
    }
    if (opts->json) {
      auto j = report_json(report);
      j["vector"] = what;
      if (!opts->plot.empty()) j["plot"] = opts->plot;
      fmt::print("{}\n", j.dump(2));
    } else {
      print_report(report, what);
      if (!opts->plot.empty()) fmt::print("plot    {}\n", opts->plot);
    }
    exit_code = 0;
  });
}

}  // namespace rvec::cli
