// `rvec sweep recipe.yaml`: the paper's whole study in one command.
//
//   1. build target + w·(post − pre) for every w > 0,
//      target + w·(control − pre) for each control vector,
//      target + w·method(post − pre) for each variant and
//      target + w·part(post − pre) for each ablation, all in one read pass
//      (a control from another vocabulary in one of its own);
//   2. for each model (target as w = 0, the merged ones, post and the
//      controls as reference rows): start a server, wait until it answers,
//      evaluate every benchmark, stop the server (always);
//   3. write each benchmark's report, JSON, plot and HTML page (and, for
//      several benchmarks, a summary over all of them).
//
// Every stage resumes: finished models are reused (by their provenance
// fingerprint) and recorded samples are not requested again.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "eval/dataset.hpp"
#include "eval/grader.hpp"
#include "merge/job.hpp"
#include "merge/param_setting.hpp"

namespace rvec {

struct SweepBenchmark {
  std::string name, data;
  DatasetFields fields;
  std::string prompt, system;
  int samples = 4;
  double temperature = 0.6, top_p = 0.95;
  int max_tokens = 1024;
  uint64_t seed = 0;
  double dev_fraction = 0;
  uint64_t split_seed = 0;
  GradeMode mode = GradeMode::kStrict;
  std::string step_pattern;   // regex marking a step-by-step answer (report column "steps")
  std::string style_pattern;  // regex marking the target's own style (report column "style")
};

// A series beside the reasoning vector's own: a control (another vector
// from pre), a variant (the reasoning vector by another merge method) or an
// ablation (a part of the reasoning vector). All are built in the sweep's one
// read pass and each is reported as its own series, named `name`.
struct SweepSeries {
  std::string name, post;
  std::vector<double> weights;
  std::string method;    // empty: task_arithmetic
  ParamSettings params;  // the method's parameters
  // A control scaled, tensor by tensor, to the reasoning vector's norm
  // (method norm_matched over the reasoning vector at weight 0 and the control).
  bool match_norms = false;
  // An ablation: the parts of the vector kept (keep_parts) or dropped
  // (merge/rules.hpp part_rules); empty: the whole vector.
  std::vector<std::string> parts;
  bool keep_parts = true;
};

struct SweepRecipe {
  std::string origin;  // the recipe file
  std::string pre, post, target, output;
  std::vector<double> weights;  // 0 = the target itself
  bool include_post = true;
  // The merged models as safetensors folders (models/w<w>/), or as GGUF
  // files of `gguf_type` (models/w<w>.gguf) served by the built-in engine
  // from the file (recipe fields format: gguf, type: q8_0).
  OutputFormat format = OutputFormat::kSafetensors;
  GgufFileType gguf_type = GgufFileType::kF16;
  std::vector<SweepSeries> series;  // the controls, the variants, then the ablations
  std::vector<SweepBenchmark> benchmarks;
  // Serving: one worker per command, each serving one model at a time, so
  // several models are evaluated at once (e.g. one per group of GPUs). No
  // command = `workers` copies of the built-in `rvec serve`. Placeholders:
  // {model} (folder, or .gguf file), {port}, {name} (served model name), {worker} (0, 1, ...).
  std::vector<std::string> serve_commands;
  int workers = 1;
  int port = 0;  // 0: a free port per server
  double startup_timeout_s = 600;
  int concurrency = 8;
  double request_timeout_s = 3600;
  double tokens_per_second = 50;  // for --dry-run's time estimate
};

SweepRecipe read_sweep_recipe(const std::string& path);

struct SweepOptions {
  bool dry_run = false;
  std::string rvec_binary;  // path of the running rvec (for the built-in server)
};

// Runs (or, with dry_run, prints the plan of) the sweep; returns the text printed.
void run_sweep(const SweepRecipe& recipe, const SweepOptions& options);

}  // namespace rvec
