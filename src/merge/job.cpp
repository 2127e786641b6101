#include "merge/job.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <set>

#include "base/error.hpp"
#include "base/json.hpp"
#include "base/test_hooks.hpp"
#include "base/text.hpp"
#include "io/async_sink.hpp"
#include "io/model_sink.hpp"
#include "io/staging.hpp"
#include "merge/provenance.hpp"

namespace rvec {
namespace fs = std::filesystem;

namespace {

constexpr const char* kJobMarker = ".rvec-job";
constexpr const char* kDoneSuffix = ".rvec-done";

// One output per weight; a job whose output is the vector (or the exported
// model) writes one, whatever weights were given.
std::vector<double> output_weights(const JobSpec& spec) {
  const JobKindInfo& kind = job_kind_info(spec.kind);
  return kind.adds_to_target && kind.reads_vector ? spec.weights : std::vector<double>{1.0};
}

bool writes_gguf(const JobSpec& spec) { return spec.format == OutputFormat::kGguf; }

// ---------------------------------------------------------------- planning --

// Export copies every tensor of the one model it reads.
MergePlan copy_plan(const ModelFolder& model) {
  MergePlan plan;
  for (const auto& t : model.tensors()) plan.tensors.push_back({&t, nullptr, nullptr, TensorAction::kCopyTarget, 0, ""});
  return plan;
}

MergePlan check_compatibility(const JobInputs& in, const JobKindInfo& kind) {
  if (!kind.reads_vector) return copy_plan(*in.target);
  const ModelFolder& output_model = kind.adds_to_target ? *in.target : *in.post;
  return plan_merge({kind.reads_pre ? in.pre : nullptr, *in.post, output_model, kind.reads_pre ? "post" : "vector",
                     kind.adds_to_target ? "target" : "post", !kind.reads_pre});
}

// Is `inner` the same path as `outer`, or below it? Both absolute and normal.
bool is_within(const fs::path& inner, const fs::path& outer) {
  const auto [end_outer, end_inner] = std::mismatch(outer.begin(), outer.end(), inner.begin(), inner.end());
  return end_outer == outer.end() || (std::next(end_outer) == outer.end() && end_outer->empty());
}

fs::path resolved(const fs::path& path) { return fs::weakly_canonical(fs::absolute(path)).lexically_normal(); }

// An output that is an input, holds one or lies inside one would replace or
// bury that input (--overwrite deletes the output first): refused.
void check_outputs_apart_from_inputs(const JobInputs& inputs, const std::vector<fs::path>& outputs) {
  const std::pair<const char*, const ModelFolder*> roles[] = {
      {"pre", inputs.pre}, {inputs.pre ? "post" : "vector", inputs.post}, {"target", inputs.target}};
  for (const auto& output : outputs) {
    const fs::path out = resolved(output);
    for (const auto& [role, model] : roles) {
      if (!model) continue;
      const fs::path in = resolved(model->path());
      const char* how = out == in ? "is" : is_within(in, out) ? "contains" : is_within(out, in) ? "is inside" : nullptr;
      if (how) {
        fail(ErrorKind::kUsage, "{}: the output {} the input {} ({}); choose another output folder", output.string(),
             how, role, model->path());
      }
    }
  }
}

// GGUF outputs are models: not a vector, named *.gguf, typed by --type.
void check_format(const JobSpec& spec) {
  if (!writes_gguf(spec)) {
    if (spec.kind == JobKind::kExport) fail(ErrorKind::kUsage, "export writes GGUF only");
    return;
  }
  if (!job_kind_info(spec.kind).adds_to_target) {
    fail(ErrorKind::kUsage, "extract writes a vector, not a model: GGUF output is for merge, apply and export");
  }
  if (spec.out_dtype) fail(ErrorKind::kUsage, "--dtype sets safetensors dtypes; a GGUF output takes --type");
  if (output_weights(spec).size() == 1 && spec.output.extension() != ".gguf") {
    fail(ErrorKind::kUsage, "{}: a GGUF output of one model is a file: name it *.gguf", spec.output.string());
  }
}

void check_weights(const JobSpec& spec) {
  if (spec.weights.empty()) fail(ErrorKind::kUsage, "no weight given (-w 0.5 or -w 0.25,0.5,1)");
  std::set<std::string> seen;
  for (double w : spec.weights) {
    if (!std::isfinite(w) || std::fabs(w) > std::numeric_limits<float>::max()) {
      fail(ErrorKind::kUsage, "weight {} is not a finite f32 number", w);
    }
    if (!seen.insert(weight_folder_name(w)).second) fail(ErrorKind::kUsage, "weight {} is given twice", w);
  }
}

DType output_dtype(const JobSpec& spec, const TensorInfo& source) {
  if (!is_arithmetic(source.dtype)) return source.dtype;
  return spec.out_dtype.value_or(source.dtype);
}

TensorTask make_task(const TensorPlan& p, const JobSpec& spec) {
  TensorTask t;
  const TensorInfo& info = *p.target->info;
  t.name = p.name();
  t.out_dtype = output_dtype(spec, info);
  t.out_shape = info.shape;
  t.note = p.note;
  const uint64_t row_elements = p.rows() == 0 ? 0 : info.element_count() / p.rows();
  if (!job_kind_info(spec.kind).adds_to_target) {
    // The vector holds only the rows pre and post share.
    t.vectors = {{p.post, p.pre}};
    if (!t.out_shape.empty()) t.out_shape[0] = p.combined_rows;
    t.combined_elements = p.combined_rows * row_elements;
    return t;
  }
  t.base = p.target;
  if (p.action != TensorAction::kCombine) return t;
  if (const TensorRule* rule = first_match(spec.rules, t.name)) {
    t.scale = rule->scale();
    t.rule = rule->describe();
  }
  if (t.scale == 0.0) {
    t.note = fmt::format("copied from target ({})", t.rule);
    return t;
  }
  t.vectors = {{p.post, p.pre}};
  t.combined_elements = p.combined_rows * row_elements;
  return t;
}

std::vector<TensorSpec> output_specs(const std::vector<TensorTask>& tasks) {
  std::vector<TensorSpec> specs;
  for (const auto& t : tasks) specs.push_back({t.name, t.out_dtype, t.out_shape});
  return specs;
}

// GGUF: the types, names and row order llama.cpp expects; tensors the file
// does not hold (rotary inv_freq buffers) are dropped from the plan.
void plan_gguf(JobPlan& plan, const ModelFolder& target, const JobSpec& spec) {
  plan.gguf = gguf_tensors(target, spec.gguf_type);
  std::map<std::string, const GgufTensorChoice*> by_source;
  for (const auto& c : plan.gguf) by_source[c.source] = &c;
  std::vector<TensorTask> kept;
  for (auto& t : plan.tasks) {
    const auto found = by_source.find(t.name);
    if (found == by_source.end()) continue;
    t.out_dtype = found->second->dtype;
    t.interleave_heads = found->second->interleave_heads;
    kept.push_back(std::move(t));
  }
  plan.tasks = std::move(kept);
}

std::unique_ptr<ModelSink> output_sink(const JobInputs& inputs, const JobSpec& spec, const JobPlan& plan, double w,
                                       const fs::path& output) {
  if (!writes_gguf(spec)) return safetensors_sink(output_specs(plan.tasks), shard_metadata(spec, w), spec.max_shard_bytes);
  std::map<std::string, const TensorTask*> task_by_name;
  for (const auto& t : plan.tasks) task_by_name[t.name] = &t;
  GgufPlan gguf;
  gguf.stem = output.stem().string();
  const std::string name = spec.kind == JobKind::kExport ? gguf_model_name(inputs.target->path()) : gguf.stem;
  gguf.metadata = gguf_metadata(*inputs.target, spec.gguf_type, {name, gguf_provenance(inputs, spec, w)});
  for (const auto& c : plan.gguf) {
    const TensorTask& t = *task_by_name.at(c.source);
    gguf.tensors.push_back({{t.name, t.out_dtype, t.out_shape}, c.name});
  }
  gguf.max_file_bytes = spec.gguf_split_bytes;
  return gguf_sink(std::move(gguf));
}

// Where the output of weight `w` goes when the job writes `weights` outputs.
fs::path output_path(const JobSpec& spec, double w, size_t weights) {
  if (weights == 1) return spec.output;
  return spec.output / (weight_folder_name(w) + (writes_gguf(spec) ? ".gguf" : ""));
}

// ---------------------------------------------------------------- outputs --

// The state of one output folder across runs.
struct OutputSlot {
  OutputResult result;
  std::string fingerprint;
  std::unique_ptr<ModelSink> sink;
  std::unique_ptr<StagingDir> staging;
  std::vector<bool> file_done;
  bool resume = false;  // the partial folder was started by this very job

  bool needs_file(size_t i) const { return !result.already_complete && !file_done[i]; }
  uint64_t bytes_to_write() const {
    uint64_t n = 0;
    for (size_t i = 0; i < file_done.size(); ++i) n += needs_file(i) ? sink->files()[i].bytes : 0;
    return n;
  }
};

bool finished_by_same_job(const fs::path& dest, const std::string& fingerprint) {
  const auto file = dest / kProvenanceFile;
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) return false;
  try {
    const auto json = read_json_file(file.string(), 64'000'000);
    return json.value("fingerprint", "") == fingerprint;
  } catch (const Error&) {
    return false;
  }
}

bool file_has_marker(const fs::path& file, const std::string& fingerprint) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) return false;
  try {
    return read_small_file(file.string(), 4096) == fingerprint;
  } catch (const Error&) {
    return false;
  }
}

// Decides, without writing anything, what is left to do for one output. A
// file from an interrupted run counts only if its marker names this job and
// the sink verifies it complete.
void inspect_slot(OutputSlot& slot, const JobSpec& spec) {
  const fs::path& dest = slot.result.path;
  slot.file_done.assign(slot.sink->files().size(), false);
  std::error_code ec;
  if (!slot.sink->is_model_folder()) {  // GGUF files carry no fingerprint: an existing output is never reused
    const fs::path first = dest.parent_path() / slot.sink->files().front().name;
    if (fs::exists(first, ec) && !spec.overwrite) {
      fail(ErrorKind::kUsage, "{}: already exists (pass --overwrite to replace it)", first.string());
    }
  } else if (fs::exists(dest, ec) && !spec.overwrite) {
    if (finished_by_same_job(dest, slot.fingerprint)) {
      slot.result.already_complete = true;
      return;
    }
    fail(ErrorKind::kUsage, "{}: already exists and was not made by this job (pass --overwrite to replace it)",
         dest.string());
  }
  // Resume only what this very job started; anything else in the partial folder is discarded.
  const fs::path partial = staging_path_for(dest);
  slot.resume = file_has_marker(partial / kJobMarker, slot.fingerprint);
  for (size_t i = 0; i < slot.file_done.size() && slot.resume; ++i) {
    const std::string& name = slot.sink->files()[i].name;
    slot.file_done[i] = file_has_marker(partial / (name + kDoneSuffix), slot.fingerprint) && slot.sink->verify(i, partial);
    slot.result.shards_reused += slot.file_done[i];
  }
}

std::vector<OutputSlot> prepare_outputs(const JobInputs& inputs, const JobSpec& spec, const JobPlan& plan) {
  const std::vector<double> weights = output_weights(spec);
  std::vector<OutputSlot> slots(weights.size());
  for (size_t k = 0; k < weights.size(); ++k) {
    slots[k].result.path = plan.outputs[k];
    slots[k].result.w = weights[k];
    slots[k].fingerprint = output_fingerprint(inputs, spec, weights[k]);
    slots[k].sink = output_sink(inputs, spec, plan, weights[k], plan.outputs[k]);
    inspect_slot(slots[k], spec);
  }
  return slots;
}

// Bytes in the output's partial folder from an earlier run that this run
// frees: everything when it starts afresh, else the files it writes again.
uint64_t reclaimable_bytes(const OutputSlot& slot) {
  if (slot.result.already_complete) return 0;
  const fs::path partial = staging_path_for(slot.result.path);
  std::error_code ec;
  if (!fs::is_directory(partial, ec)) return 0;
  std::set<std::string> kept;
  for (size_t i = 0; i < slot.file_done.size(); ++i) {
    if (slot.file_done[i]) kept.insert(slot.sink->files()[i].name);
  }
  uint64_t bytes = 0;
  for (const auto& entry : fs::directory_iterator(partial, ec)) {
    if (entry.is_regular_file(ec) && !kept.count(entry.path().filename().string())) bytes += entry.file_size(ec);
  }
  return bytes;
}

void check_free_space(const std::vector<OutputSlot>& slots, const JobSpec& spec) {
  uint64_t bytes_needed = 0, reclaimable = 0;
  for (const auto& slot : slots) {
    bytes_needed += slot.bytes_to_write();
    reclaimable += reclaimable_bytes(slot);
  }
  const uint64_t free = free_bytes_at(spec.output);
  if (bytes_needed > free + reclaimable) {
    fail(ErrorKind::kIo, "{}: not enough disk space: the job writes {} but {} is free{} (nothing was written)",
         spec.output.string(), human_bytes(bytes_needed), human_bytes(free),
         reclaimable > 0 ? fmt::format(", plus {} its earlier partial run frees", human_bytes(reclaimable)) : "");
  }
}

// Creates (or reopens) the output's partial folder; called after the space check.
void open_slot(OutputSlot& slot, const JobSpec& spec) {
  if (slot.result.already_complete) return;
  slot.staging = std::make_unique<StagingDir>(slot.result.path, spec.overwrite, slot.resume);
  slot.staging->write_text(kJobMarker, slot.fingerprint);
}

// ---------------------------------------------------------------- streaming --

// Stops the job once an output holds more new NaN/Inf values than allowed.
void check_nonfinite(const OutputSlot& slot, const NonfiniteCounts& in_this_file, const JobSpec& spec) {
  uint64_t total = 0;
  for (const auto& [tensor, count] : slot.result.nonfinite) total += count;
  for (const auto& [tensor, count] : in_this_file) total += count;
  if (total <= spec.max_new_nonfinite) return;
  const auto& [tensor, count] = in_this_file.empty() ? slot.result.nonfinite.back() : in_this_file.back();
  fail(ErrorKind::kUsage,
       "{}: w = {} turned {} finite values into NaN or Inf ({} in {}): the weight overflows the output dtype; "
       "the merge stopped and left no finished output (--max-nonfinite N accepts up to N)",
       slot.result.path.string(), slot.result.w, total, count, tensor);
}

// Writes file `i` of every output in `active` in one pass over its tensors.
void write_file(size_t i, const std::vector<OutputSlot*>& active, const JobSpec& spec,
                const std::map<std::string, const TensorTask*>& task_by_name, JobResult& result,
                const std::function<void(uint64_t)>& progress) {
  std::vector<double> weights;
  std::vector<std::unique_ptr<TensorFileWriter>> writers;
  std::vector<TensorFileWriter*> raw_writers;
  for (auto* slot : active) {
    weights.push_back(slot->result.w);
    writers.push_back(slot->sink->open(i, slot->staging->path()));
    raw_writers.push_back(writers.back().get());
  }
  AsyncSink sink(2 * active.size() + 2, kMergeBlockElements * 4);
  const MethodParams params = complete_params(job_method(spec), spec.method_params);
  TaskExecutor executor(job_method(spec), params, weights, sink, raw_writers);
  for (const auto& t : writers.front()->order()) {
    executor.run(*task_by_name.at(t.name), progress);
    for (size_t k = 0; k < active.size(); ++k) check_nonfinite(*active[k], executor.nonfinite()[k], spec);
  }
  sink.drain();
  const std::string& name = active.front()->sink->files()[i].name;
  for (size_t k = 0; k < active.size(); ++k) {
    writers[k]->finish();
    result.bytes_written += writers[k]->total_size();
    active[k]->staging->write_text(name + kDoneSuffix, active[k]->fingerprint);
    for (const auto& entry : executor.nonfinite()[k]) active[k]->result.nonfinite.push_back(entry);
  }
  result.bytes_read += executor.bytes_read();
  for (const auto& [kind, sums] : executor.vector_sums()) result.vector_by_kind[kind] += sums;
}

// Writes every file some output still needs, file by file.
void write_files(std::vector<OutputSlot>& slots, const JobSpec& spec, const JobPlan& plan, JobResult& result,
                 const JobProgress& progress) {
  std::map<std::string, const TensorTask*> task_by_name;
  for (const auto& t : plan.tasks) task_by_name[t.name] = &t;
  const bool statistics_pass = job_method(spec).needs_statistics_pass();
  const size_t files = slots.front().sink->files().size();
  uint64_t skipped_read = 0;
  uint64_t files_written = 0;
  for (size_t i = 0; i < files; ++i) {
    std::vector<OutputSlot*> active;
    for (auto& slot : slots) {
      if (slot.needs_file(i)) active.push_back(&slot);
    }
    if (active.empty()) {
      for (const auto& t : slots.front().sink->files()[i].tensors) {
        skipped_read += task_by_name.at(t.name)->bytes_to_read(statistics_pass);
      }
      if (progress) progress(skipped_read + result.bytes_read, plan.bytes_to_read);
      continue;
    }
    const uint64_t read_before = result.bytes_read + skipped_read;
    write_file(i, active, spec, task_by_name, result, [&](uint64_t read) {
      if (progress) progress(read_before + read, plan.bytes_to_read);
    });
    test_hooks::maybe_kill_after_shards(++files_written);
  }
}

void check_inputs_unchanged(const JobInputs& inputs) {
  for (const auto* model : {inputs.pre, inputs.post, inputs.target}) {
    if (!model) continue;
    for (const auto& f : model->shards()) f->check_unchanged();
  }
}

void finish_slot(OutputSlot& slot, const JobInputs& inputs, const JobSpec& spec, const JobPlan& plan,
                 const JobResult& result) {
  slot.sink->finish(*slot.staging);
  if (!slot.sink->is_model_folder()) {  // the files hold everything; markers go with the partial folder
    std::vector<std::string> names;
    for (const auto& file : slot.sink->files()) names.push_back(file.name);
    slot.staging->commit_files(names);
    return;
  }
  const JobKindInfo& kind = job_kind_info(spec.kind);
  const ModelFolder& source = kind.adds_to_target ? *inputs.target : *inputs.post;
  copy_aux_files(source, *slot.staging, {.only_config = !kind.adds_to_target, .dtype = spec.out_dtype});
  slot.staging->write_text("README.md", model_card(inputs, spec, plan, slot.result, result));
  if (!spec.recipe_text.empty()) slot.staging->write_text(kRecipeFile, spec.recipe_text);
  slot.staging->write_text(kProvenanceFile,
                           provenance(inputs, spec, plan, slot.result, slot.fingerprint, result).dump(2) + "\n");
  for (const auto& file : slot.sink->files()) fs::remove(slot.staging->file(file.name + kDoneSuffix));
  fs::remove(slot.staging->file(kJobMarker));
  slot.staging->commit();
}

}  // namespace

const JobKindInfo& job_kind_info(JobKind kind) {
  static const JobKindInfo kMerge{"merge", "merge", true, true, true};
  static const JobKindInfo kApply{"apply", "apply", false, true, true};
  static const JobKindInfo kExtract{"extract", kVectorKind, true, false, true};
  static const JobKindInfo kExport{"export", "export", false, true, false};
  switch (kind) {
    case JobKind::kMerge: return kMerge;
    case JobKind::kApply: return kApply;
    case JobKind::kExtract: return kExtract;
    case JobKind::kExport: return kExport;
  }
  return kMerge;
}

std::string_view job_kind_name(JobKind kind) { return job_kind_info(kind).name; }

std::string weight_folder_name(double w) { return fmt::format("w{}", w); }

const MergeMethod& job_method(const JobSpec& spec) {
  return spec.method ? *spec.method : merge_method(kDefaultMergeMethod);
}

std::string job_formula(const JobSpec& spec) {
  const JobKindInfo& kind = job_kind_info(spec.kind);
  const MergeMethod& method = job_method(spec);
  const std::string vector = kind.reads_pre ? "post - pre" : "vector";
  if (!kind.reads_vector) return "target";
  if (!kind.adds_to_target) return vector;
  if (method.name() == kDefaultMergeMethod) return kind.reads_pre ? "target + w * (post - pre)" : "target + w * vector";
  return fmt::format("target + w * {}({})", method.name(), vector);
}

JobPlan plan_job(const JobInputs& inputs, const JobSpec& spec) {
  JobPlan plan;
  const JobKindInfo& kind = job_kind_info(spec.kind);
  if (spec.output.empty()) fail(ErrorKind::kUsage, "the output path is empty (-o OUT)");
  if (kind.adds_to_target && kind.reads_vector) check_weights(spec);
  if (spec.out_dtype && !is_arithmetic(*spec.out_dtype)) {
    fail(ErrorKind::kUsage, "output dtype {} is not BF16, F16 or F32", dtype_name(*spec.out_dtype));
  }
  check_format(spec);
  complete_params(job_method(spec), spec.method_params);
  plan.compatibility = check_compatibility(inputs, kind);
  if (!plan.compatibility.compatible()) {
    for (const auto& f : plan.compatibility.findings) {
      if (f.severity == Severity::kError) {
        fail(ErrorKind::kIncompatible, "{}: {} ({} error(s) in all; `rvec check` lists them)", f.subject, f.message,
             plan.compatibility.count(Severity::kError));
      }
    }
  }
  for (const auto& p : plan.compatibility.tensors) plan.tasks.push_back(make_task(p, spec));
  if (writes_gguf(spec)) plan_gguf(plan, *inputs.target, spec);
  const bool statistics_pass = job_method(spec).needs_statistics_pass();
  for (const auto& t : plan.tasks) plan.bytes_to_read += t.bytes_to_read(statistics_pass);
  const std::vector<double> weights = output_weights(spec);  // never empty: check_weights ran
  for (double w : weights) plan.outputs.push_back(output_path(spec, w, weights.size()));
  plan.bytes_per_output = output_sink(inputs, spec, plan, weights.front(), plan.outputs.front())->total_bytes();
  std::vector<fs::path> outputs = plan.outputs;
  outputs.push_back(spec.output);
  check_outputs_apart_from_inputs(inputs, outputs);
  plan.free_bytes = free_bytes_at(spec.output);
  return plan;
}

JobResult run_job(const JobInputs& inputs, const JobSpec& spec, const JobPlan& plan, const JobProgress& progress) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<OutputSlot> slots = prepare_outputs(inputs, spec, plan);
  check_free_space(slots, spec);
  for (auto& slot : slots) open_slot(slot, spec);

  JobResult result;
  write_files(slots, spec, plan, result, progress);
  check_inputs_unchanged(inputs);
  result.vector_stats_complete = true;
  for (const auto& slot : slots) {
    result.vector_stats_complete = result.vector_stats_complete && !slot.result.already_complete && slot.result.shards_reused == 0;
  }
  for (auto& slot : slots) {
    if (!slot.result.already_complete) finish_slot(slot, inputs, spec, plan, result);
    result.outputs.push_back(slot.result);
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace rvec
