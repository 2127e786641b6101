#include "base/error.hpp"
#include <fmt/format.h>

#include "base/text.hpp"
#include "cli/commands.hpp"
#include "cli/model_summary.hpp"
#include "io/staging.hpp"
#include "merge/plan.hpp"

namespace rvec::cli {
namespace {

struct CheckOptions {
  std::string pre, post, target;
  std::string output = ".";
  unsigned models = 1;
  bool json = false;
};

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

}  // namespace

void add_check(CLI::App& app, int& exit_code) {
  auto opts = std::make_shared<CheckOptions>();
  auto* cmd = app.add_subcommand(
      "check", "Can PRE, POST and TARGET be merged? Reads only headers and configs, answers in well under a second");
  cmd->footer(
      "Compares architecture fields, tensor names, shapes and dtypes, embedding rows and tied heads of the three\n"
      "models and the free disk space at the output path. Exit codes: 0 compatible, 3 incompatible,\n"
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
  cmd->add_flag("--json", opts->json, "Print one JSON object for scripts");
  cmd->callback([opts, &exit_code] {
    const auto pre = ModelFolder::open(opts->pre);
    const auto post = ModelFolder::open(opts->post);
    const auto target = ModelFolder::open(opts->target);
    const MergePlan plan = plan_merge({pre.get(), *post, *target});
    const std::vector<nlohmann::ordered_json> summaries = {
        model_summary(*pre, {.tokenizer = false}), model_summary(*post, {.tokenizer = false}),
        model_summary(*target, {.tokenizer = false})};
    DiskCheck disk;
    disk.per_model = output_tensor_bytes(*target);
    disk.needed = disk.per_model * opts->models;
    disk.free = free_bytes_at(opts->output);
    if (opts->json) {
      fmt::print("{}\n", to_json(plan, summaries, *opts, disk).dump(2));
    } else {
      print_human(plan, summaries, *opts, disk);
    }
    exit_code = plan.compatible() ? 0 : rvec::exit_code(ErrorKind::kIncompatible);
  });
}

}  // namespace rvec::cli
