// rvec merge / extract / apply / run: one code path through a Recipe.
#include <fmt/format.h>

#include <set>

#include "base/error.hpp"
#include "base/process_stats.hpp"
#include "base/progress.hpp"
#include "base/json.hpp"
#include "base/text.hpp"
#include "cli/commands.hpp"
#include "cli/method_flags.hpp"
#include "merge/mergekit.hpp"
#include "merge/provenance.hpp"
#include "merge/recipe.hpp"
#include "numeric/kernels.hpp"

namespace rvec::cli {
namespace {

struct RunFlags {
  bool dry_run = false;
  bool json = false;
  bool quiet = false;
  bool stats = false;
  unsigned threads = 1;
};

struct RunOptions {
  std::string recipe, output;
  bool overwrite = false;
  std::optional<uint64_t> max_nonfinite;
  RunFlags flags;

  // The command line's overrides applied to `r`; true when any changed what the recipe says.
  bool apply_to(Recipe& r) const {
    r.overwrite = r.overwrite || overwrite;
    if (!output.empty()) r.output = output;
    if (max_nonfinite) r.max_nonfinite = *max_nonfinite;
    return !output.empty() || max_nonfinite.has_value();
  }
};

// Options shared by merge, apply and extract.
struct MergeOptions {
  Recipe recipe;
  std::string weights;
  std::vector<std::string> skip, scale, layers;
  MethodFlags method;
  RunFlags flags;
};

// The input models of a recipe, each path opened once; JobInputs point into them.
struct OpenModels {
  OpenFolders folders;
  JobInputs inputs;

  // The model at `path`, which the recipe's `field` names; an empty path is a usage error.
  const ModelFolder* open(const std::string& path, const char* field) {
    if (path.empty()) fail(ErrorKind::kUsage, "the path of {} is empty", field);
    return folders.get(path);
  }
  // A folder written by `rvec extract`, or a usage error.
  const ModelFolder* open_saved_vector(const std::string& path) {
    const ModelFolder* model = open(path, "the vector");
    const auto& meta = model->shards().front()->header().metadata;
    const auto kind = meta.find("rvec.kind");
    if (kind == meta.end() || kind->second != kVectorKind) {
      bad_input("{}: not a vector written by `rvec extract` (its shards lack rvec.kind = {}); to combine three "
                "models use `rvec merge`",
                path, kVectorKind);
    }
    return model;
  }
};

std::unique_ptr<OpenModels> open_models(const Recipe& r) {
  auto m = std::make_unique<OpenModels>();
  for (const auto& v : r.vectors) {
    m->inputs.vectors.push_back(v.vector.empty() ? VectorInput{m->open(v.pre, "pre"), m->open(v.post, "post")}
                                                 : VectorInput{nullptr, m->open_saved_vector(v.vector)});
  }
  if (r.vectors.empty() && r.kind != JobKind::kExport) {
    m->inputs.vectors.push_back(r.kind == JobKind::kApply ? VectorInput{nullptr, m->open_saved_vector(r.vector)}
                                                          : VectorInput{m->open(r.pre, "pre"), m->open(r.post, "post")});
  }
  if (!r.target.empty() || job_kind_info(r.kind).adds_to_target) m->inputs.target = m->open(r.target, "target");
  return m;
}

// Each vector's values that differ from the merge's, as "v2 density 0.3".
std::string vector_values(const TensorTask& t, const JobPlan& plan, const MergeMethod& method) {
  std::string out;
  for (size_t i = 0; i < t.vectors.size(); ++i) {
    std::string values;
    if (t.vectors[i].weight != 1.0) values += fmt::format(" weight {}", t.vectors[i].weight);
    for (const auto& p : method.params()) {
      const double value = t.vectors[i].params.at(p.name);
      if (p.per_vector && value != plan.merge_params.at(p.name)) values += fmt::format(" {} {}", p.name, param_text(p, value));
    }
    if (!values.empty()) out += fmt::format(" v{}{}", i + 1, values);
  }
  return out;
}

std::string describe_task(const TensorTask& t, const JobPlan& plan, const MergeMethod& method) {
  if (t.copied()) return t.note.empty() ? "copy from target" : t.note;
  std::string what = t.base ? "combine" : "post - pre";
  if (t.combined_elements != t.element_count()) {
    what += fmt::format(" (first {} of {} elements; rest kept)", t.combined_elements, t.element_count());
  }
  if (!t.rule.empty()) what += fmt::format(" [{}]", t.rule);
  if (t.base) what += vector_values(t, plan, method);
  if (const unsigned passes = statistics_passes(method, t, plan.merge_params)) {
    what += fmt::format(" ({} statistics passes)", passes);
  }
  return what;
}

// Outputs that each have their own w (merge, apply).
bool has_weights(const JobSpec& spec) {
  const JobKindInfo& kind = job_kind_info(spec.kind);
  return kind.adds_to_target && kind.reads_vector;
}

void print_plan(const JobPlan& plan, const JobSpec& spec) {
  const MergeMethod& method = job_method(spec);
  for (const auto& f : plan.compatibility.findings) {
    fmt::print("{:<7} {}: {}\n", severity_name(f.severity), f.subject, f.message);
  }
  if (job_kind_info(spec.kind).adds_to_target) fmt::print("method  {}\n", describe_method(method, plan.merge_params));
  for (const auto& t : plan.tasks) {
    fmt::print("tensor  {}  {} {}  {}\n", t.name, dtype_name(t.out_dtype), shape_string(t.out_shape),
               describe_task(t, plan, method));
  }
  for (size_t k = 0; k < plan.outputs.size(); ++k) {
    fmt::print("output  {}{}\n", plan.outputs[k].string(),
               has_weights(spec) ? fmt::format("  (w = {})", spec.weights[k]) : "");
  }
  const uint64_t total_write = plan.bytes_per_output * plan.outputs.size();
  fmt::print("read    {} at most (for all {} output(s): every input byte once, the vectors once more per statistics "
             "pass a tensor needs)\n",
             human_bytes(plan.bytes_to_read), plan.outputs.size());
  fmt::print("write   {} per output, {} in all\n", human_bytes(plan.bytes_per_output), human_bytes(total_write));
  fmt::print("disk    {} free at {}: {}\n", human_bytes(plan.free_bytes), spec.output.string(),
             plan.free_bytes >= total_write ? "enough" : "NOT ENOUGH (a real run would refuse)");
}

nlohmann::ordered_json plan_json(const JobPlan& plan, const JobSpec& spec) {
  const MergeMethod& method = job_method(spec);
  nlohmann::ordered_json out;
  out["kind"] = job_kind_name(spec.kind);
  out["method"] = method_json(spec, plan);
  out["findings"] = findings_json(plan);
  out["tensors"] = nlohmann::ordered_json::array();
  for (const auto& t : plan.tasks) {
    nlohmann::ordered_json vectors = nlohmann::ordered_json::array();
    for (const auto& v : t.vectors) {
      nlohmann::ordered_json values = {{"weight", v.weight}};
      for (const auto& p : method.params()) {
        if (p.per_vector) values[p.name] = v.params.at(p.name);
      }
      vectors.push_back(values);
    }
    out["tensors"].push_back({{"name", t.name}, {"dtype", std::string(dtype_name(t.out_dtype))},
                              {"shape", t.out_shape}, {"combined_elements", t.combined_elements},
                              {"scale", t.scale}, {"rule", t.rule}, {"note", t.note},
                              {"statistics_passes", statistics_passes(method, t, plan.merge_params)},
                              {"vectors", vectors}});
  }
  out["outputs"] = nlohmann::ordered_json::array();
  for (size_t k = 0; k < plan.outputs.size(); ++k) {
    out["outputs"].push_back({{"path", plan.outputs[k].string()}, {"w", has_weights(spec) ? spec.weights[k] : 1.0}});
  }
  out["bytes_to_read"] = plan.bytes_to_read;
  out["bytes_per_output"] = plan.bytes_per_output;
  out["bytes_to_write"] = plan.bytes_per_output * plan.outputs.size();
  out["free_bytes"] = plan.free_bytes;
  return out;
}

// Where the time went: the executor thread's stages add up to its wall time;
// the writer thread's appends overlap them.
void print_stages(const JobResult& r) {
  const StageTimes& s = r.stages;
  fmt::print("stages  read {:.2f} s ({}) | compute {:.2f} s | wait for writer {:.2f} s || writer {:.2f} s ({}) | "
             "sync {:.2f} s\n",
             s.read_s, human_bytes(r.bytes_read), s.compute_s, s.write_wait_s, s.write_s,
             human_bytes(s.bytes_appended), s.sync_s);
}

nlohmann::ordered_json stages_json(const StageTimes& s) {
  return {{"read_s", s.read_s},   {"compute_s", s.compute_s},           {"write_wait_s", s.write_wait_s},
          {"write_s", s.write_s}, {"bytes_appended", s.bytes_appended}, {"sync_s", s.sync_s}};
}

void print_outputs(const JobResult& result) {
  for (const auto& o : result.outputs) {
    std::string status = o.already_complete ? "already complete (same inputs and settings), kept" : "written";
    if (!o.already_complete && o.shards_reused > 0) {
      status += fmt::format("; {} verified shard(s) reused from an interrupted run", o.shards_reused);
    }
    fmt::print("output  {}  {}\n", o.path.string(), status);
    for (const auto& [tensor, count] : o.nonfinite) {
      fmt::print("warning {}: tensor \"{}\" has {} NaN/Inf value(s) where the inputs had none\n", o.path.string(),
                 tensor, count);
    }
  }
}

// The pass's totals (the same in every job's result).
void print_done(const JobResult& result) {
  const double rate = result.seconds > 0 ? static_cast<double>(result.bytes_read) / result.seconds : 0;
  fmt::print("done    read {}, wrote {} in {:.1f} s ({}/s read)\n", human_bytes(result.bytes_read),
             human_bytes(result.bytes_written), result.seconds, human_bytes(static_cast<uint64_t>(rate)));
  if (result.bytes_skipped > 0) {
    fmt::print("        skipped {} of planned statistics passes: the first pass found their thresholds\n",
               human_bytes(result.bytes_skipped));
  }
}

nlohmann::ordered_json result_json(const JobResult& result, const JobPlan& plan) {
  nlohmann::ordered_json out;
  out["findings"] = findings_json(plan);
  out["outputs"] = nlohmann::ordered_json::array();
  for (const auto& o : result.outputs) {
    nlohmann::ordered_json nonfinite = nlohmann::ordered_json::array();
    for (const auto& [tensor, count] : o.nonfinite) nonfinite.push_back({{"tensor", tensor}, {"count", count}});
    out["outputs"].push_back({{"path", o.path.string()}, {"w", o.w}, {"already_complete", o.already_complete},
                              {"shards_reused", o.shards_reused}, {"new_nonfinite", nonfinite}});
  }
  out["bytes_read"] = result.bytes_read;
  out["bytes_skipped"] = result.bytes_skipped;
  out["bytes_written"] = result.bytes_written;
  out["seconds"] = result.seconds;
  out["stages"] = stages_json(result.stages);
  const ProcessStats stats = process_stats();
  out["process"] = {{"rchar", stats.rchar}, {"read_bytes", stats.read_bytes}, {"wchar", stats.wchar},
                    {"write_bytes", stats.write_bytes}, {"peak_rss_bytes", stats.peak_rss_bytes}};
  out["simd_target"] = kernels::simd_target();
  return out;
}

// A recipe's jobs (itself, or the merge and its variants), planned.
struct PlannedJobs {
  std::unique_ptr<OpenModels> models;  // opened once: every job reads the same tensors
  std::vector<JobSpec> specs;
  std::vector<JobPlan> plans;
};

PlannedJobs plan_recipe(const Recipe& recipe, const RunFlags& flags, std::string recipe_text) {
  PlannedJobs p;
  p.models = open_models(recipe);
  const std::vector<Recipe> jobs = recipe_jobs(recipe);
  for (size_t j = 0; j < jobs.size(); ++j) {
    try {
      JobSpec& spec = p.specs.emplace_back(job_spec(jobs[j]));
      spec.command_line = command_line();
      spec.recipe_text = jobs.size() == 1 && !recipe_text.empty() ? recipe_text : recipe_yaml(jobs[j]);
      spec.threads = flags.threads;
      p.plans.push_back(plan_job(p.models->inputs, spec));
    } catch (const Error& e) {
      if (j == 0) throw;  // jobs[0] is the merge itself
      throw Error(e.kind(), fmt::format("variant \"{}\": {}", recipe.variants[j - 1].name, e.what()));
    }
  }
  return p;
}

// The plans' warnings on stderr, each once (the variants share the merge's inputs), before the run.
void print_warnings(const std::vector<JobPlan>& plans) {
  std::set<std::string> printed;
  for (const auto& plan : plans) {
    for (const auto& f : plan.compatibility.findings) {
      if (f.severity != Severity::kWarning) continue;
      const std::string line = fmt::format("warning {}: {}", f.subject, f.message);
      if (printed.insert(line).second) fmt::print(stderr, "{}\n", one_line(line));
    }
  }
}

// One job's JSON as it is, several as {"jobs": [...]}.
nlohmann::ordered_json jobs_json(std::vector<nlohmann::ordered_json> jobs) {
  if (jobs.size() == 1) return std::move(jobs.front());
  return {{"jobs", std::move(jobs)}};
}

void execute(const Recipe& recipe, const RunFlags& flags, std::string recipe_text) {
  const PlannedJobs p = plan_recipe(recipe, flags, std::move(recipe_text));
  if (flags.dry_run) {
    std::vector<nlohmann::ordered_json> plans;
    for (size_t j = 0; j < p.specs.size(); ++j) {
      if (flags.json) plans.push_back(plan_json(p.plans[j], p.specs[j]));
      else print_plan(p.plans[j], p.specs[j]);
    }
    if (flags.json) fmt::print("{}\n", jobs_json(std::move(plans)).dump(2));
    return;
  }
  print_warnings(p.plans);
  std::vector<SharedJob> shared;
  for (size_t j = 0; j < p.specs.size(); ++j) shared.push_back({&p.models->inputs, &p.specs[j], &p.plans[j]});
  std::unique_ptr<ProgressBar> bar;
  const std::vector<JobResult> results = run_jobs(shared, [&](uint64_t done, uint64_t total) {
    if (!bar) {
      bar = std::make_unique<ProgressBar>(std::string(job_kind_name(p.specs.front().kind)), total,
                                          !flags.quiet && !flags.json);
    }
    bar->update(done);
  });
  if (bar) bar->finish();
  if (flags.json) {
    std::vector<nlohmann::ordered_json> out;
    for (size_t j = 0; j < results.size(); ++j) out.push_back(result_json(results[j], p.plans[j]));
    fmt::print("{}\n", jobs_json(std::move(out)).dump(2));
  } else if (!flags.quiet) {
    for (const auto& result : results) print_outputs(result);
    print_done(results.front());
  }
  if (flags.stats && !flags.json) print_stages(results.front());
}

// --format, --type, --split-max-size (docs/gguf.md).
void add_gguf_options(CLI::App* cmd, Recipe& r, bool gguf_only) {
  if (!gguf_only) {
    cmd->add_option("--format", r.format, "Output format: safetensors (a model folder) or gguf (llama.cpp's file)")
        ->check(CLI::IsMember({"safetensors", "gguf"}))
        ->capture_default_str();
  }
  auto* type = cmd->add_option("--type", r.gguf_type, "GGUF tensor types: f32, f16, bf16, q8_0 or q4_k_m");
  if (gguf_only) type->required();
  cmd->add_option("--split-max-size", r.split_max_size,
                  "GGUF: split into NAME-0000k-of-0000n.gguf files of at most this much tensor data (e.g. 50GB)");
}

// --dry-run, --json and -q, as every merge-like command takes them.
void add_output_flags(CLI::App* cmd, RunFlags& flags, const std::string& dry_run_help) {
  cmd->add_flag("--dry-run", flags.dry_run, dry_run_help);
  cmd->add_flag("--json", flags.json, "Print the plan or the result as JSON");
  cmd->add_flag("-q,--quiet", flags.quiet, "No progress bar or summary");
}

// --threads: compute threads; the bytes written do not depend on it.
void add_threads_option(CLI::App* cmd, RunFlags& flags) {
  cmd->add_option("--threads", flags.threads, "Threads that compute: output files at once, and the threads left over run later tensors' statistics passes ahead (the bytes do not depend on it)")
      ->capture_default_str()
      ->check(CLI::Range(1u, 64u));
}

void add_job_options(CLI::App* cmd, MergeOptions& o, bool with_weights, bool with_rules) {
  if (with_weights) {
    cmd->add_option("-w,--weights", o.weights, "Weight(s) w, comma-separated: -w 0.5 or -w 0.25,0.5,0.75,1")
        ->required();
  }
  cmd->add_option("-o,--output", o.recipe.output,
                  "Output folder (one weight: the model itself; several: one subfolder w<w>/ per weight); GGUF: the .gguf file, or a folder of w<w>.gguf files")
      ->required();
  cmd->add_option("--dtype", o.recipe.dtype, "Output dtype BF16, F16 or F32 (default: the target's)");
  cmd->add_option("--max-shard-size", o.recipe.max_shard_size, "Shard size limit, decimal units as in transformers")
      ->capture_default_str();
  if (with_rules) add_gguf_options(cmd, o.recipe, false);
  if (with_rules) {
    cmd->add_option("--skip", o.skip, "Leave tensors matching REGEX exactly as in the target (repeatable)");
    cmd->add_option("--scale", o.scale, "REGEX=FACTOR: multiply w by FACTOR for matching tensors (repeatable)");
    cmd->add_option("--layers", o.layers, "A-B=FACTOR: multiply w by FACTOR for layers A..B (repeatable)");
    o.method.add_to(cmd, false);
  }
  add_threads_option(cmd, o.flags);
  add_output_flags(cmd, o.flags, "Print the plan (tensors, rules, bytes, disk room) and write nothing");
  cmd->add_flag("--overwrite", o.recipe.overwrite, "Replace existing output folders");
  cmd->add_option("--max-nonfinite", o.recipe.max_nonfinite,
                  "Stop once an output holds more than N values that became NaN or Inf from finite inputs (an "
                  "overflowing weight); default 0")
      ->capture_default_str();
  cmd->add_flag("--stats", o.flags.stats,
                "Also print where the time went: reading, computing, waiting for the writer, the writer's appends, "
                "syncing (always in --json as \"stages\")");
}

// --method, --density, --gamma, --seed and --param NAME=VALUE into the recipe.
void collect_params(MergeOptions& o) {
  if (!o.method.methods.empty()) o.recipe.method = o.method.methods.front();
  o.recipe.params = o.method.settings();
  if (!o.recipe.method.empty()) return;
  const MergeMethod& fallback = merge_method(kDefaultMergeMethod);
  for (const auto& [name, setting] : o.recipe.params) {
    if (find_setting_param(fallback, name)) continue;
    const auto names = merge_method_names();
    const bool known = std::ranges::any_of(names, [&](std::string_view m) { return find_param(merge_method(m), name); });
    if (!known) fail(ErrorKind::kUsage, "no merge method takes a parameter \"{}\"", name);
    fail(ErrorKind::kUsage, "{} needs --method: {}, the default, takes only weight and normalize", name,
         fallback.name());
  }
}

// Rules in the order given per kind: --skip first, then --scale, then --layers.
void collect_rules(MergeOptions& o) {
  for (const auto& s : o.skip) o.recipe.rules.push_back({s, std::nullopt, 0.0});
  for (const auto& s : o.scale) {
    const TensorRule parsed = TensorRule::scaled(s);  // validates
    o.recipe.rules.push_back({s.substr(0, s.rfind('=')), std::nullopt, parsed.scale()});
  }
  for (const auto& s : o.layers) {
    const TensorRule parsed = TensorRule::layers(s);
    o.recipe.rules.push_back({std::nullopt, s.substr(0, s.rfind('=')), parsed.scale()});
  }
}

constexpr const char* kSemantics =
    "Every element is computed in f32 from the inputs' values, d = post - pre, out = target + w*d, and rounded\n"
    "once to the output dtype (nearest even). Floating tensors present in all models with equal shapes are\n"
    "combined; integer tensors are copied from the target; embedding/lm_head rows the models do not share are\n"
    "kept from the target. Config, tokenizer and chat template come from the target. Outputs appear only when\n"
    "complete; an interrupted run resumes when the same command is run again.";

}  // namespace

void add_merge_commands(CLI::App& app, int& exit_code) {
  auto merge = std::make_shared<MergeOptions>();
  auto* m = app.add_subcommand("merge", "target + w * (post - pre) for one or many w, in one read pass");
  m->add_option("--pre", merge->recipe.pre, "The base the reasoning model was fine-tuned from")->required();
  m->add_option("--post", merge->recipe.post, "The reasoning model")->required();
  m->add_option("--target", merge->recipe.target, "The model that receives the vector")->required();
  add_job_options(m, *merge, true, true);
  m->footer(std::string(kSemantics) +
            "\nExamples:\n"
            "  rvec merge --pre Qwen2.5-32B-Instruct --post s1-32B --target EZO-32B -w 0.25,0.5,0.75,1 -o sweep\n"
            "  rvec merge --pre P --post Q --target T -w 0.5 -o out --skip 'embed_tokens|lm_head' --dry-run\n"
            "  rvec merge --pre P --post Q --target T -w 0.5,1 -o out --method ties --density 0.2\n"
            "magnitude, ties, breadcrumbs and dare_* trim the vector first (exact top-k, a band of ranks, or\n"
            "DARE's seeded drops); random and norm_matched are controls. docs/merging.md gives every exact formula.\n"
            "Several vectors: a recipe's vectors: list (rvec run).");
  m->callback([merge, &exit_code] {
    merge->recipe.kind = JobKind::kMerge;
    merge->recipe.weights = parse_weight_list(merge->weights);
    collect_rules(*merge);
    collect_params(*merge);
    execute(merge->recipe, merge->flags, "");
    exit_code = 0;
  });

  auto extract = std::make_shared<MergeOptions>();
  auto* e = app.add_subcommand("extract", "Save the reasoning vector post - pre as a model-like folder");
  e->add_option("--pre", extract->recipe.pre, "The base model")->required();
  e->add_option("--post", extract->recipe.post, "The reasoning model")->required();
  add_job_options(e, *extract, false, false);
  e->get_option("--output")->description("Output folder: the vector, as sharded safetensors (no GGUF: a vector is not a model)");
  e->get_option("--dtype")->description("Storage dtype BF16, F16 or F32 (default: the inputs'; F32 keeps apply bit-exact)");
  e->footer(
      "The vector keeps post's tensor names and has only the embedding rows pre and post share. Store it in F32\n"
      "(--dtype F32) and `rvec apply` gives bit-identical results to `rvec merge`; in BF16 (the default for BF16\n"
      "models: half the size) each difference is rounded to 8 significant bits, so small deltas lose precision.\n"
      "Example:\n  rvec extract --pre Qwen2.5-32B-Instruct --post s1-32B --dtype F32 -o s1-vector");
  e->callback([extract, &exit_code] {
    extract->recipe.kind = JobKind::kExtract;
    execute(extract->recipe, extract->flags, "");
    exit_code = 0;
  });

  auto apply = std::make_shared<MergeOptions>();
  auto* a = app.add_subcommand("apply", "target + w * vector, for a vector saved by `rvec extract`");
  a->add_option("--target", apply->recipe.target, "The model that receives the vector")->required();
  a->add_option("--vector", apply->recipe.vector, "A folder written by `rvec extract`")->required();
  add_job_options(a, *apply, true, true);
  a->footer(std::string(kSemantics) + "\nExample:\n  rvec apply --target EZO-32B --vector s1-vector -w 0.5,1 -o out");
  a->callback([apply, &exit_code] {
    apply->recipe.kind = JobKind::kApply;
    apply->recipe.weights = parse_weight_list(apply->weights);
    collect_rules(*apply);
    collect_params(*apply);
    execute(apply->recipe, apply->flags, "");
    exit_code = 0;
  });

  auto exp = std::make_shared<MergeOptions>();
  auto* x = app.add_subcommand("export-gguf", "Write a model folder as one GGUF file for llama.cpp (F32, F16, BF16, Q8_0, Q4_K_M)");
  x->add_option("model", exp->recipe.target, "The model folder (Qwen2 or Llama, safetensors)")->required();
  x->add_option("-o,--output", exp->recipe.output, "The .gguf file to write")->required();
  add_gguf_options(x, exp->recipe, true);
  add_output_flags(x, exp->flags, "Print the plan (tensors, types, bytes) and write nothing");
  x->add_flag("--overwrite", exp->recipe.overwrite, "Replace an existing output");
  x->footer(
      "Tensor names, types, the Llama q/k row order and the metadata (hyperparameters, tokenizer, chat template)\n"
      "follow llama.cpp's convert_hf_to_gguf.py and, for q4_k_m, llama-quantize; differences: docs/gguf.md.\n"
      "Examples:\n  rvec export-gguf models/Qwen2.5-7B-Instruct -o qwen2.5-7b-q8_0.gguf --type q8_0\n"
      "  rvec merge --pre P --post Q --target T -w 1 --format gguf --type q4_k_m -o merged.gguf   (one pass)");
  x->callback([exp, &exit_code] {
    exp->recipe.kind = JobKind::kExport;
    exp->recipe.format = "gguf";
    execute(exp->recipe, exp->flags, "");
    exit_code = 0;
  });

  auto run = std::make_shared<RunOptions>();
  auto* r = app.add_subcommand("run", "Run a merge, apply, extract or export described by a YAML recipe, or a mergekit config");
  r->add_option("recipe", run->recipe, "Recipe file (see docs/merging.md; every output stores its own) or mergekit config")
      ->required();
  r->add_option("-o,--output", run->output, "Output folder: required for a mergekit config; replaces a recipe's output");
  add_output_flags(r, run->flags, "Print the plan and write nothing");
  r->add_flag("--overwrite", run->overwrite, "Replace existing output folders");
  r->add_option("--max-nonfinite", run->max_nonfinite,
                "Replaces the recipe's max_nonfinite: how many values that became NaN or Inf an output may hold");
  r->add_flag("--stats", run->flags.stats, "Also print where the time went (see rvec merge --help)");
  add_threads_option(r, run->flags);
  r->footer("Example recipe:\n" + recipe_yaml({.kind = JobKind::kMerge,
                                               .pre = "Qwen2.5-32B-Instruct",
                                               .post = "s1-32B",
                                               .target = "EZO-32B",
                                               .weights = {0.25, 0.5, 0.75, 1.0},
                                               .output = "sweep",
                                               .rules = {{"lm_head", std::nullopt, 0.0}}}) +
            "A mergekit config (merge_method: task_arithmetic, ties, dare_linear, dare_ties or breadcrumbs) runs as\n"
            "mergekit would run it, with the differences docs/merging.md lists:\n"
            "  rvec run mergekit.yaml -o OUT");
  r->callback([run, &exit_code] {
    const std::string text = read_small_file(run->recipe, 1'000'000);
    if (is_mergekit_config(text)) {
      Recipe recipe = mergekit_recipe(text, run->recipe, run->output);
      run->apply_to(recipe);
      execute(recipe, run->flags, fmt::format("# rvec's recipe for the mergekit config {}\n{}", run->recipe, recipe_yaml(recipe)));
    } else {
      Recipe recipe = parse_recipe(text, run->recipe);
      const bool changed = run->apply_to(recipe);
      execute(recipe, run->flags, changed ? recipe_yaml(recipe) : text);
    }
    exit_code = 0;
  });
}

}  // namespace rvec::cli
