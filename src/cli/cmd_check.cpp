#include "base/error.hpp"
#include <fmt/format.h>

#include <cmath>

#include "base/text.hpp"
#include "cli/commands.hpp"
#include "cli/layer_rows.hpp"
#include "cli/method_flags.hpp"
#include "cli/model_summary.hpp"
#include "io/staging.hpp"
#include "base/progress.hpp"
#include "merge/job.hpp"
#include "merge/lineage.hpp"
#include "merge/plan.hpp"
#include "merge/provenance.hpp"

namespace rvec::cli {
namespace {

struct CheckOptions {
  std::string pre, post, target;
  MethodFlags method;
  bool deep = false;
  std::vector<std::string> candidates;
  std::string output = ".";
  unsigned models = 1;
  bool json = false;
};

// What one merge method would do with these models.
struct MethodReport {
  const MergeMethod* method;
  JobPlan plan;  // tasks and bytes, no outputs
  std::map<unsigned, size_t> tensors_by_passes;  // statistics passes -> combined tensors
};

// The flags' parameters for `method`: those it takes.
ParamSettings params_for(const MergeMethod& method, const ParamSettings& given) {
  ParamSettings out;
  for (const auto& [name, setting] : given) {
    if (find_param(method, name)) out.emplace(name, setting);
  }
  return out;
}

std::vector<MethodReport> method_reports(const CheckOptions& o, const JobInputs& inputs) {
  const ParamSettings given = o.method.settings();
  std::vector<MethodReport> reports;
  for (const auto& name : o.method.methods) reports.push_back({&merge_method(name), {}, {}});
  for (const auto& [name, setting] : given) {
    const bool taken = std::ranges::any_of(reports, [&](const MethodReport& r) { return find_param(*r.method, name); });
    if (!taken) fail(ErrorKind::kUsage, "no method given with --method takes the parameter \"{}\"", name);
  }
  for (auto& r : reports) {
    JobSpec spec;
    spec.method = r.method;
    spec.method_params = params_for(*r.method, given);
    r.plan = plan_tasks(inputs, spec);
    for (const auto& t : r.plan.tasks) {
      if (!t.copied()) ++r.tensors_by_passes[statistics_passes(*r.method, t, r.plan.merge_params)];
    }
  }
  return reports;
}

std::string passes_text(const MethodReport& r) {
  std::string out;
  for (const auto& [passes, tensors] : r.tensors_by_passes) {
    out += fmt::format("{}{} tensor(s) with up to {} statistics pass(es)", out.empty() ? "" : ", ", tensors, passes);
  }
  return out;
}

void print_methods(const std::vector<MethodReport>& reports) {
  for (const auto& r : reports) {
    fmt::print("method  {}\n", describe_method(*r.method, r.plan.merge_params));
    fmt::print("        {}: reads at most {} for any number of w (the vectors once more per statistics pass)\n",
               passes_text(r), human_bytes(r.plan.bytes_to_read));
  }
}

nlohmann::ordered_json methods_json(const std::vector<MethodReport>& reports) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const auto& r : reports) {
    const nlohmann::ordered_json params = param_values_json(*r.method, r.plan.merge_params);
    nlohmann::ordered_json passes = nlohmann::ordered_json::object();
    for (const auto& [n, tensors] : r.tensors_by_passes) passes[std::to_string(n)] = tensors;
    out.push_back({{"name", r.method->name()}, {"formula", r.method->formula()}, {"params", params},
                   {"tensors_by_statistics_passes", passes}, {"bytes_to_read", r.plan.bytes_to_read}});
  }
  return out;
}

struct DiskCheck {
  uint64_t per_model = 0;
  uint64_t needed = 0;
  uint64_t free = 0;
};

nlohmann::ordered_json to_json(const MergePlan& plan, const std::vector<nlohmann::ordered_json>& summaries,
                               const CheckOptions& o, const DiskCheck& disk) {
  nlohmann::ordered_json out;
  out["compatible"] = plan.compatible();
  out["models"] = {{"pre", summaries[0]}, {"post", summaries[1]}, {"target", summaries[2]}};
  out["findings"] = nlohmann::ordered_json::array();
  for (const auto& f : plan.findings) {
    out["findings"].push_back(
        {{"severity", std::string(severity_name(f.severity))}, {"subject", f.subject}, {"message", f.message}});
  }
  size_t combined = 0;
  for (const auto& t : plan.tensors) combined += t.action == TensorAction::kCombine;
  out["plan"] = {{"tensors", plan.tensors.size()}, {"combined", combined}, {"copied", plan.tensors.size() - combined}};
  out["disk"] = {{"output_path", o.output},
                 {"bytes_per_model", disk.per_model},
                 {"models", o.models},
                 {"bytes_needed", disk.needed},
                 {"free_bytes", disk.free},
                 {"enough", disk.free >= disk.needed}};
  return out;
}

void print_human(const MergePlan& plan, const std::vector<nlohmann::ordered_json>& summaries, const CheckOptions& o,
                 const DiskCheck& disk) {
  const char* roles[] = {"pre", "post", "target"};
  for (int i = 0; i < 3; ++i) {
    fmt::print("{:<7} {}  ({})\n", roles[i], summaries[i]["path"].get<std::string>(), model_one_line(summaries[i]));
  }
  for (const auto& f : plan.findings) {
    fmt::print("{:<7} {}: {}\n", severity_name(f.severity), f.subject, f.message);
  }
  size_t combined = 0;
  for (const auto& t : plan.tensors) combined += t.action == TensorAction::kCombine;
  fmt::print("plan    {} tensors: {} combined as target + w * (post - pre), {} copied from target\n",
             plan.tensors.size(), combined, plan.tensors.size() - combined);
  fmt::print("disk    {} merged model(s) need {}; free at {}: {}{}\n", o.models, human_bytes(disk.needed), o.output,
             human_bytes(disk.free), disk.free >= disk.needed ? "" : "  (NOT ENOUGH)");
  if (plan.compatible()) {
    fmt::print("verdict compatible: a merge can proceed ({} warnings)\n", plan.count(Severity::kWarning));
  } else {
    fmt::print("verdict incompatible: {} error(s); a merge would be refused\n", plan.count(Severity::kError));
  }
}

nlohmann::ordered_json stats_json(const DeltaStats& s) {
  return {{"elements", s.elements}, {"rel_post", s.rel_post()}, {"rel_target", s.rel_target()}, {"cosine", s.cosine()}};
}

nlohmann::ordered_json lineage_json(const LineageReport& r) {
  nlohmann::ordered_json out;
  out["post_verdict"] = verdict_name(r.post_verdict);
  out["target_verdict"] = verdict_name(r.target_verdict);
  out["deltas_overlap"] = r.deltas_overlap;
  out["matrices"] = stats_json(r.matrices);
  out["total"] = stats_json(r.total);
  out["by_kind"] = nlohmann::ordered_json::object();
  for (const auto& [kind, s] : r.by_kind) out["by_kind"][kind] = stats_json(s);
  out["by_layer"] = nlohmann::ordered_json::array();
  for (const auto& [layer, s] : r.by_layer) {
    auto row = stats_json(s);
    row["layer"] = layer;
    out["by_layer"].push_back(row);
  }
  out["tensors"] = nlohmann::ordered_json::array();
  for (const auto& t : r.tensors) {
    auto row = stats_json(t.stats);
    row["name"] = t.name;
    row["kind"] = t.kind;
    out["tensors"].push_back(row);
  }
  out["candidates"] = nlohmann::ordered_json::array();
  for (const auto& c : r.candidates) {
    out["candidates"].push_back({{"path", c.path}, {"rel_post", c.rel_post}, {"tensors_compared", c.tensors_compared},
                                 {"tensors_skipped", c.tensors_skipped}});
  }
  out["nonfinite"] = nlohmann::ordered_json::object();
  for (const auto& [role, bad] : r.nonfinite) {
    out["nonfinite"][role] = {{"count", bad.count}, {"first_tensor", bad.first_tensor}};
  }
  out["bytes_read"] = r.bytes_read;
  return out;
}

// print_nonfinite() names the tensors on the lines above the verdicts.
constexpr const char* kNonFiniteVerdict = "cannot be judged: the weights hold NaN or Inf (above)";

std::string verdict_text(LineageVerdict v, const char* who) {
  switch (v) {
    case LineageVerdict::kFineTune: return fmt::format("{} looks like a fine-tune of pre", who);
    case LineageVerdict::kSuspicious:
      return fmt::format("{} differs from pre more than fine-tuning usually does (check the pairing)", who);
    case LineageVerdict::kUnrelated:
      return fmt::format("{} is NOT a fine-tune of pre: the delta is as large as the weights (unrelated models; "
                         "the vector would be noise)", who);
    case LineageVerdict::kNonFinite:
      return kNonFiniteVerdict;
  }
  return "";
}

void print_nonfinite(const LineageReport& r) {
  for (const auto& [role, bad] : r.nonfinite) {
    fmt::print("error   {}: {} NaN/Inf weight values (the first in {}); a merge would spread them\n", role, bad.count,
               bad.first_tensor);
  }
}

void print_overlap(const LineageReport& r) {
  const double cosine = r.matrices.cosine();
  if (!std::isfinite(cosine)) {
    fmt::print("overlap cos(post-pre, target-pre) = nan: {}\n", kNonFiniteVerdict);
    return;
  }
  fmt::print("overlap cos(post-pre, target-pre) = {:+.4f}: {}\n", cosine,
             r.deltas_overlap ? "the two fine-tunes pull the same weights the same way (target may derive from post; "
                                "expect interference)"
                              : "the two fine-tunes are largely independent");
}

void print_lineage(const LineageReport& r) {
  print_nonfinite(r);
  const DeltaStats& m = r.matrices;  // what the verdicts use
  fmt::print("lineage ||post-pre||/||pre|| = {:.4f} (matrices): {}\n", m.rel_post(), verdict_text(r.post_verdict, "post"));
  fmt::print("lineage ||target-pre||/||pre|| = {:.4f} (matrices): {}\n", m.rel_target(),
             verdict_text(r.target_verdict, "target"));
  print_overlap(r);
  fmt::print("{:<11} {:>10} {:>10} {:>8}\n", "kind", "rel post", "rel target", "cosine");
  for (const auto& [kind, s] : r.by_kind) {
    fmt::print("{:<11} {:>10.4f} {:>10.4f} {:>+8.4f}\n", kind, s.rel_post(), s.rel_target(), s.cosine());
  }
  std::map<int64_t, std::string> rel, cosine;
  for (const auto& [layer, s] : r.by_layer) {
    rel[layer] = fmt::format("{:.3f}", s.rel_post());
    cosine[layer] = fmt::format("{:+.2f}", s.cosine());
  }
  print_layer_rows("rel post", rel);
  print_layer_rows("cosine  ", cosine);
  for (size_t i = 0; i < r.candidates.size(); ++i) {
    const auto& c = r.candidates[i];
    fmt::print("parent  #{} {}  ||post-cand||/||cand|| = {:.4f} ({} tensors compared, {} skipped)\n", i + 1, c.path,
               c.rel_post, c.tensors_compared, c.tensors_skipped);
  }
  if (!r.candidates.empty() && r.candidates.front().rel_post < m.rel_post() / 2) {
    fmt::print("suggest {} is a closer parent of post than pre; use it as --pre\n", r.candidates.front().path);
  }
}

}  // namespace

void add_check(CLI::App& app, int& exit_code) {
  auto opts = std::make_shared<CheckOptions>();
  auto* cmd = app.add_subcommand(
      "check", "Can PRE, POST and TARGET be merged? Reads only headers and configs, answers in well under a second");
  cmd->footer(
      "Compares architecture fields, tensor names, shapes and dtypes, embedding rows and tied heads of the three\n"
      "models and the free disk space at the output path. --deep streams the weights once more and checks\n"
      "that post and target are fine-tunes of pre (docs/lineage.md). --method M (repeatable) reports what each\n"
      "merge method would do: its values, statistics passes and bytes read. Exit codes: 0 compatible, 3 incompatible\n"
      "(or, with --deep, a model that is not a fine-tune of pre or holds NaN/Inf weights),\n"
      "4 unreadable or corrupt input, 2 bad usage.\n"
      "Example:\n"
      "  rvec check Qwen2.5-32B-Instruct s1-32B EZO-Qwen2.5-32B-Instruct -o out/ --models 4");
  cmd->add_option("pre", opts->pre, "The base model the reasoning model was fine-tuned from")->required();
  cmd->add_option("post", opts->post, "The reasoning model")->required();
  cmd->add_option("target", opts->target, "The model to receive the vector")->required();
  cmd->add_option("-o,--output", opts->output, "Where merged models would be written (for the disk check)")
      ->capture_default_str();
  cmd->add_option("--models", opts->models, "How many merged models (one per weight) would be written")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1000u));
  cmd->add_flag("--deep", opts->deep,
                "Also stream all weights once: fine-tune sizes, delta overlap, lineage verdict (docs/lineage.md)");
  cmd->add_option("--candidates", opts->candidates, "With --deep: rank these models as possible parents of post");
  cmd->add_flag("--json", opts->json, "Print one JSON object for scripts");
  opts->method.add_to(cmd, true);
  cmd->callback([opts, &exit_code] {
    const auto pre = ModelFolder::open(opts->pre);
    const auto post = ModelFolder::open(opts->post);
    const auto target = ModelFolder::open(opts->target);
    const MergePlan plan = plan_merge({pre.get(), *post, *target});
    const JobInputs inputs{{{pre.get(), post.get()}}, target.get()};
    const std::vector<MethodReport> methods = plan.compatible() ? method_reports(*opts, inputs) : std::vector<MethodReport>{};
    const std::vector<nlohmann::ordered_json> summaries = {
        model_summary(*pre, {.tokenizer = false}), model_summary(*post, {.tokenizer = false}),
        model_summary(*target, {.tokenizer = false})};
    DiskCheck disk;
    disk.per_model = output_tensor_bytes(*target);
    disk.needed = disk.per_model * opts->models;
    disk.free = free_bytes_at(opts->output);
    std::optional<LineageReport> lineage;
    std::vector<std::unique_ptr<ModelFolder>> candidates;
    if ((opts->deep || !opts->candidates.empty()) && plan.compatible()) {
      std::vector<const ModelFolder*> candidate_ptrs;
      for (const auto& c : opts->candidates) {
        candidates.push_back(ModelFolder::open(c));
        candidate_ptrs.push_back(candidates.back().get());
      }
      std::unique_ptr<ProgressBar> bar;
      lineage = analyse_lineage(plan, candidate_ptrs, [&](uint64_t done, uint64_t total) {
        if (!bar) bar = std::make_unique<ProgressBar>("reading", total, !opts->json);
        bar->update(done);
      });
      if (bar) bar->finish();
    }
    if (opts->json) {
      auto out = to_json(plan, summaries, *opts, disk);
      if (lineage) out["lineage"] = lineage_json(*lineage);
      if (!opts->method.methods.empty()) out["methods"] = methods_json(methods);
      fmt::print("{}\n", out.dump(2));
    } else {
      print_human(plan, summaries, *opts, disk);
      print_methods(methods);
      if (lineage) print_lineage(*lineage);
    }
    const bool unrelated = lineage && (lineage->post_verdict == LineageVerdict::kUnrelated ||
                                       lineage->target_verdict == LineageVerdict::kUnrelated ||
                                       !lineage->nonfinite.empty());
    exit_code = plan.compatible() && !unrelated ? 0 : rvec::exit_code(ErrorKind::kIncompatible);
  });
}

}  // namespace rvec::cli
