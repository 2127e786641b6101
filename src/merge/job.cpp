#include "merge/job.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <atomic>
#include <mutex>
#include <set>

#include "base/error.hpp"
#include "base/json.hpp"
#include "base/test_hooks.hpp"
#include "base/thread_pool.hpp"
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
// In a GGUF output's partial folder from just before its files are renamed
// into place until the run has put every output in place: names the job and
// the files (committed_text), so that a run killed in between, started
// again, finds the output complete.
constexpr const char* kCommittedMarker = ".rvec-committed";

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

std::vector<MergePlan> check_compatibility(const JobInputs& in, const JobKindInfo& kind) {
  if (!kind.reads_vector) return {copy_plan(*in.target)};
  std::vector<MergePlan> plans;
  for (size_t i = 0; i < in.vectors.size(); ++i) {
    const VectorInput& v = in.vectors[i];
    const ModelFolder& output_model = kind.adds_to_target ? *in.target : *v.post;
    plans.push_back(plan_merge({v.pre, *v.post, output_model, vector_role(in, i, v.pre ? "post" : "vector"),
                                kind.adds_to_target ? "target" : "post", v.pre == nullptr,
                                vector_role(in, i, "pre")}));
  }
  return plans;
}

// Every input model with its role in messages.
std::vector<std::pair<std::string, const ModelFolder*>> input_roles(const JobInputs& inputs) {
  std::vector<std::pair<std::string, const ModelFolder*>> roles;
  for (size_t i = 0; i < inputs.vectors.size(); ++i) {
    const VectorInput& v = inputs.vectors[i];
    if (v.pre) roles.emplace_back(vector_role(inputs, i, "pre"), v.pre);
    roles.emplace_back(vector_role(inputs, i, v.pre ? "post" : "vector"), v.post);
  }
  if (inputs.target) roles.emplace_back("target", inputs.target);
  return roles;
}

void check_inputs(const JobInputs& inputs, const JobSpec& spec) {
  const JobKindInfo& kind = job_kind_info(spec.kind);
  if (kind.reads_vector == inputs.vectors.empty()) {
    fail(ErrorKind::kUsage, "a {} {}", kind.name, kind.reads_vector ? "needs a vector" : "takes no vector");
  }
  if (kind.adds_to_target != (inputs.target != nullptr)) {
    fail(ErrorKind::kUsage, "a {} {}", kind.name, kind.adds_to_target ? "needs a target" : "takes no target");
  }
  if (std::ranges::any_of(inputs.vectors, [](const VectorInput& v) { return v.post == nullptr; })) {
    fail(ErrorKind::kUsage, "a vector has no post model");
  }
  if (spec.kind == JobKind::kExtract && (inputs.vectors.size() != 1 || !inputs.vectors[0].pre)) {
    fail(ErrorKind::kUsage, "extract takes one pre and one post model");
  }
  if (!spec.vector_params.empty() && spec.vector_params.size() != inputs.vectors.size()) {
    fail(ErrorKind::kUsage, "{} vector settings for {} vectors", spec.vector_params.size(), inputs.vectors.size());
  }
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
  const auto roles = input_roles(inputs);
  for (const auto& output : outputs) {
    const fs::path out = resolved(output);
    for (const auto& [role, model] : roles) {
      const fs::path in = resolved(model->path());
      const char* how = out == in ? "is" : is_within(in, out) ? "contains" : is_within(out, in) ? "is inside" : nullptr;
      if (how) {
        fail(ErrorKind::kUsage, "{}: the output {} the input {} ({}); choose another output folder", output.string(),
             how, role, model->path());
      }
    }
  }
}

constexpr size_t kMostNameBytes = 255;  // a file or folder name, on the file systems rvec writes to

// Names a file system takes (255 bytes each), checked before any work: an
// output's folders, and its partial folder and lock file beside it (the
// longest, `.NAME.rvec-partial`). A long variant name once failed only when
// the merge came to write.
void check_output_names(const std::vector<fs::path>& outputs) {
  for (const auto& output : outputs) {
    for (const auto& part : fs::absolute(output).lexically_normal()) {
      if (part.string().size() > kMostNameBytes) {
        fail(ErrorKind::kUsage, "{}: a folder name of {} bytes; a file system takes at most {}", output.string(),
             part.string().size(), kMostNameBytes);
      }
    }
    const std::string partial = staging_path_for(output).filename().string();
    if (partial.size() > kMostNameBytes) {
      fail(ErrorKind::kUsage, "{}: the name is too long: its partial folder {} would have {} bytes, more than the {} "
           "a file system takes",
           output.string(), one_line(partial, 24), partial.size(), kMostNameBytes);
    }
  }
}

// The same for the files of an output (a split GGUF's STEM-00001-of-0000n.gguf)
// and their markers (NAME.rvec-done).
void check_file_names(const ModelSink& sink, const fs::path& output) {
  for (const SinkFile& file : sink.files()) {
    const size_t longest = file.name.size() + std::string_view(kDoneSuffix).size();
    if (longest > kMostNameBytes) {
      fail(ErrorKind::kUsage, "{}: the name is too long: its file {} with its marker would have {} bytes, more than "
           "the {} a file system takes",
           output.string(), one_line(file.name, 24), longest, kMostNameBytes);
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
  std::map<float, double> seen;  // the merge uses w as f32: 1 and 1.00000001, or 0 and -0, are one weight
  for (double w : spec.weights) {
    if (!std::isfinite(w) || std::fabs(w) > std::numeric_limits<float>::max()) {
      fail(ErrorKind::kUsage, "weight {} is not a finite f32 number", w);
    }
    const auto [at, fresh] = seen.try_emplace(static_cast<float>(w), w);
    if (!fresh && weight_folder_name(at->second) == weight_folder_name(w)) {
      fail(ErrorKind::kUsage, "weight {} is given twice", w);
    }
    if (!fresh) fail(ErrorKind::kUsage, "weights {} and {} are the same f32 number, so the same merge", at->second, w);
  }
}

DType output_dtype(const JobSpec& spec, const TensorInfo& source) {
  if (!is_arithmetic(source.dtype)) return source.dtype;
  return spec.out_dtype.value_or(source.dtype);
}

// A parameter's value for vector i in tensor `name` at layer position t:
// the vector's own setting, else the merge's; none when neither gives one.
std::optional<double> given_param(const MethodParam& param, const JobSpec& spec, size_t i, const std::string& name,
                                  double t) {
  const auto from = [&](const ParamSettings& settings) -> std::optional<double> {
    const auto it = settings.find(param.name);
    return it == settings.end() ? std::nullopt : it->second.value_at(param, name, t);
  };
  if (!spec.vector_params.empty()) {
    if (const auto value = from(spec.vector_params[i])) return *value;
  }
  return from(spec.method_params);
}

bool has_setting(const JobSpec& spec, size_t i, const std::string& param) {
  return spec.method_params.contains(param) || (!spec.vector_params.empty() && spec.vector_params[i].contains(param));
}

// Vector i's weight in tensor `name`: the default 1 where no setting gives
// one, except for a mergekit config with a weight set (spec.weight_required),
// refused as mergekit stops with "Missing required parameter weight".
double resolve_weight(const JobSpec& spec, size_t i, const std::string& name, double t) {
  const MethodParam& weight = vector_weight_param();
  if (const auto value = given_param(weight, spec, i, name, t)) return *value;
  if (spec.weight_required && has_setting(spec, i, weight.name)) {
    fail(ErrorKind::kUsage, "tensor {}: vector {} has no weight here: no filter of its weight matches the tensor and "
         "no value without a filter follows (add `- value: W` last)", name, i + 1);
  }
  return weight.default_value;
}

// Vector i's weight and parameters for one tensor, validated.
TaskVector resolve_vector(const TensorPlan& p, const JobSpec& spec, size_t i, double t) {
  const MergeMethod& method = job_method(spec);
  TaskVector v{p.post, p.pre};
  const std::string& name = p.name();
  v.weight = resolve_weight(spec, i, name, t);
  if (!std::isfinite(v.weight) || std::fabs(v.weight) > std::numeric_limits<float>::max()) {
    fail(ErrorKind::kUsage, "tensor {}: the weight of vector {} is {}, not a finite f32 number", name, i + 1, v.weight);
  }
  MethodParams given;
  for (const auto& param : method.params()) {
    given[param.name] = given_param(param, spec, i, name, t).value_or(param.default_value);
  }
  try {
    v.params = complete_params(method, given);
  } catch (const Error& e) {
    fail(ErrorKind::kUsage, "tensor {}, vector {}: {}", name, i + 1, e.what());
  }
  return v;
}

struct TaskSource {
  const std::vector<MergePlan>& plans;  // one per vector
  size_t tensor;                        // index into each plan's tensors
  const MergePlan& joined;
  uint64_t layers;                      // of the output model, for gradients
};

TensorTask make_task(const TaskSource& source, const JobSpec& spec) {
  const TensorPlan& p = source.joined.tensors[source.tensor];
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
  const double position = layer_position(t.name, source.layers);
  for (size_t i = 0; i < source.plans.size(); ++i) {
    t.vectors.push_back(resolve_vector(source.plans[i].tensors[source.tensor], spec, i, position));
  }
  t.combined_elements = p.combined_rows * row_elements;
  return t;
}

// Settings are checked by name before any tensor is planned: the merge's
// against the method, each vector's against its per-vector parameters.
void check_settings(const JobSpec& spec) {
  const MergeMethod& method = job_method(spec);
  std::vector<std::string> per_vector = {"weight"};
  for (const auto& p : method.params()) {
    if (p.per_vector) per_vector.push_back(p.name);
  }
  for (const auto& [name, setting] : spec.method_params) {
    const MethodParam* declared = find_param(method, name);
    if (!declared && name != "weight") fail(ErrorKind::kUsage, "merge method {} takes no parameter \"{}\"", method.name(), name);
    if (declared && !declared->per_vector && !setting.is_constant()) {
      fail(ErrorKind::kUsage, "parameter {} of {} is one value for the whole merge; it cannot vary over the layers",
           name, method.name());
    }
  }
  for (size_t i = 0; i < spec.vector_params.size(); ++i) {
    for (const auto& [name, setting] : spec.vector_params[i]) {
      if (std::ranges::find(per_vector, name) == per_vector.end()) {
        fail(ErrorKind::kUsage, "vector {}: \"{}\" is not a per-vector parameter of {} (per vector: {})", i + 1, name,
             method.name(), fmt::join(per_vector, ", "));
      }
    }
  }
}

// The merge-wide values: constant settings, defaults for the rest.
MethodParams merge_params(const JobSpec& spec) {
  const MergeMethod& method = job_method(spec);
  MethodParams given;
  for (const auto& [name, setting] : spec.method_params) {
    const MethodParam* declared = find_param(method, name);
    if (declared && setting.is_constant()) given[name] = *setting.value_at(*declared, "", 0);
  }
  return complete_params(method, given);
}

uint64_t layer_count(const ModelFolder& model) {
  if (model.config() && model.config()->num_hidden_layers) return *model.config()->num_hidden_layers;
  uint64_t layers = 0;
  for (const auto& t : model.tensors()) {
    if (const auto layer = layer_index(t.name())) layers = std::max(layers, *layer + 1);
  }
  return layers;
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
  for (const auto& c : plan.gguf) {
    if (c.generated.empty()) by_source[c.source] = &c;
  }
  std::vector<TensorTask> kept;
  for (auto& t : plan.tasks) {
    const auto found = by_source.find(t.name);
    if (found == by_source.end()) continue;
    t.out_dtype = found->second->dtype;
    t.interleave_heads = found->second->interleave_heads;
    kept.push_back(std::move(t));
  }
  for (const auto& c : plan.gguf) {
    if (c.generated.empty()) continue;
    TensorTask t;
    t.name = c.name;
    t.out_dtype = c.dtype;
    t.out_shape = {c.generated.size()};
    t.generated = c.generated;
    t.note = "generated as llama.cpp's converter does";
    kept.push_back(std::move(t));
  }
  plan.tasks = std::move(kept);
}

// The task that writes GGUF tensor `c`: its source's, or (generated) its own.
const std::string& gguf_task_name(const GgufTensorChoice& c) { return c.generated.empty() ? c.source : c.name; }

std::unique_ptr<ModelSink> output_sink(const JobSpec& spec, const JobInputs& inputs, const JobPlan& plan, double w,
                                       const fs::path& output) {
  if (!writes_gguf(spec)) {
    return safetensors_sink(output_specs(plan.tasks), shard_metadata(spec, inputs, w), spec.max_shard_bytes);
  }
  std::map<std::string, const TensorTask*> task_by_name;
  for (const auto& t : plan.tasks) task_by_name[t.name] = &t;
  GgufPlan gguf;
  gguf.stem = output.stem().string();
  const std::string name = spec.kind == JobKind::kExport ? gguf_model_name(inputs.target->path()) : gguf.stem;
  gguf.metadata = gguf_metadata(*inputs.target, spec.gguf_type, {name, gguf_provenance(inputs, spec, w)});
  for (const auto& c : plan.gguf) {
    const TensorTask& t = *task_by_name.at(gguf_task_name(c));
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
  std::unique_ptr<OutputLock> lock;  // taken once the checks pass, held until the output is committed
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

// Whether the marker `file` holds exactly `text` (a job's fingerprint, or a
// GGUF output's committed_text).
bool file_has_marker(const fs::path& file, const std::string& text) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) return false;
  try {
    return read_small_file(file.string(), 1 << 20) == text;
  } catch (const Error&) {
    return false;
  }
}

// The job's fingerprint and, per file of the output in `dir`, its device and
// inode, which a rename keeps: a file at the destination other than the one
// this job renamed there (an older output it was to replace) does not match.
// Empty when a file is missing.
std::string committed_text(const OutputSlot& slot, const fs::path& dir) {
  std::string text = slot.fingerprint;
  for (const auto& file : slot.sink->files()) {
    struct stat st {};
    if (::stat((dir / file.name).c_str(), &st) != 0) return {};
    text += fmt::format("\n{} {}:{}", file.name, st.st_dev, st.st_ino);
  }
  return text;
}

// A GGUF output put in place by this very job in a run that was stopped
// before it put every output in place: GGUF files carry no fingerprint, so
// the marker left in the partial folder says so, and the files must be the
// ones it renamed, of the planned size and header.
bool committed_by_same_run(const OutputSlot& slot) {
  const fs::path dest = slot.result.path;
  const std::string text = committed_text(slot, dest.parent_path());
  if (text.empty() || !file_has_marker(staging_path_for(dest) / kCommittedMarker, text)) return false;
  for (size_t i = 0; i < slot.sink->files().size(); ++i) {
    if (!slot.sink->verify(i, dest.parent_path())) return false;
  }
  return true;
}

// Decides, without writing anything, what is left to do for one output. A
// file from an interrupted run counts only if its marker names this job and
// the sink verifies it complete.
void inspect_slot(OutputSlot& slot, const JobSpec& spec) {
  const fs::path& dest = slot.result.path;
  slot.result.already_complete = false;
  slot.result.shards_reused = 0;
  slot.file_done.assign(slot.sink->files().size(), false);
  std::error_code ec;
  if (!slot.sink->is_model_folder()) {
    const fs::path first = dest.parent_path() / slot.sink->files().front().name;
    if (fs::exists(first, ec) && !spec.overwrite) {
      if (committed_by_same_run(slot)) {
        slot.result.already_complete = true;
        return;
      }
      fail(ErrorKind::kUsage, "{}: already exists ({})", first.string(), spec.replace_hint);
    }
  } else if (fs::exists(dest, ec) && !spec.overwrite) {
    if (finished_by_same_job(dest, slot.fingerprint)) {
      slot.result.already_complete = true;
      return;
    }
    fail(ErrorKind::kUsage, "{}: already exists and was not made by this job ({})", dest.string(), spec.replace_hint);
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
    slots[k].sink = output_sink(spec, inputs, plan, weights[k], plan.outputs[k]);
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

// The space every output of the pass still needs, against the free space
// where the first job writes (a sweep writes all its models under one folder).
void check_free_space(const std::vector<std::vector<OutputSlot>*>& slots_of_jobs, const fs::path& output) {
  uint64_t bytes_needed = 0, reclaimable = 0;
  for (const auto* slots : slots_of_jobs) {
    for (const auto& slot : *slots) {
      bytes_needed += slot.bytes_to_write();
      reclaimable += reclaimable_bytes(slot);
    }
  }
  const uint64_t free = free_bytes_at(output);
  if (bytes_needed > free + reclaimable) {
    fail(ErrorKind::kIo, "{}: not enough disk space: the job writes {} but {} is free{} (nothing was written)",
         output.string(), human_bytes(bytes_needed), human_bytes(free),
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

// One job of a pass: its outputs, and its tasks by tensor name.
struct JobState {
  size_t index = 0;  // in the pass
  const SharedJob* job = nullptr;
  std::vector<OutputSlot> slots;
  std::map<std::string, const TensorTask*> task_by_name;
  JobResult result;
};

// An output that needs a file: its job and its slot.
struct ActiveOutput {
  JobState* job = nullptr;
  OutputSlot* slot = nullptr;
};

// What writing one file gave, added to the jobs' results in file order (so
// the results are the same for any number of threads).
struct FileOutcome {
  std::vector<ActiveOutput> active;        // the outputs that need the file, job by job
  std::vector<NonfiniteCounts> nonfinite;  // per active output
  std::map<size_t, std::map<std::string, kernels::DeltaSums>> vector_sums;  // by job index
  uint64_t bytes_read = 0, bytes_skipped = 0, bytes_written = 0;
  StageTimes stages;
};

// New NaN/Inf values per output over the files finished so far; stops the
// pass once an output holds more than its job allows. Thread-safe.
class NonfiniteBudget {
 public:
  void check(const ActiveOutput& out, const NonfiniteCounts& in_this_file) const {
    uint64_t total = finished(*out.slot);
    for (const auto& [tensor, count] : in_this_file) total += count;
    if (total <= out.job->job->spec->max_new_nonfinite) return;
    const auto& [tensor, count] = in_this_file.back();
    fail(ErrorKind::kUsage,
         "{}: w = {} turned {} finite values into NaN or Inf ({} in {}): the merged values overflow the output dtype "
         "(is w, or a vector's weight, too large?); the merge stopped and left no finished output (--max-nonfinite N "
         "accepts up to N)",
         out.slot->result.path.string(), out.slot->result.w, total, count, tensor);
  }

  void add(const OutputSlot& slot, const NonfiniteCounts& in_file) {
    const std::lock_guard lock(mutex_);
    for (const auto& [tensor, count] : in_file) totals_[&slot] += count;
  }

 private:
  uint64_t finished(const OutputSlot& slot) const {
    const std::lock_guard lock(mutex_);
    const auto it = totals_.find(&slot);
    return it == totals_.end() ? 0 : it->second;
  }

  mutable std::mutex mutex_;
  std::map<const OutputSlot*, uint64_t> totals_;
};

// The executor's groups for one file: one per job with outputs that need it.
std::vector<OutputGroup> file_groups(const std::vector<ActiveOutput>& active) {
  std::vector<OutputGroup> groups;
  for (size_t k = 0; k < active.size(); ++k) {
    const SharedJob& job = *active[k].job->job;
    if (k == 0 || active[k].job != active[k - 1].job) {
      groups.push_back({&job_method(*job.spec), &job.plan->merge_params, {}, {}});
    }
    groups.back().weights.push_back(active[k].slot->result.w);
    groups.back().writers.push_back(k);
  }
  return groups;
}

// The jobs whose outputs need file `i`, in the order of `active`.
std::vector<const JobState*> file_jobs(const std::vector<ActiveOutput>& active) {
  std::vector<const JobState*> jobs;
  for (size_t k = 0; k < active.size(); ++k) {
    if (k == 0 || active[k].job != active[k - 1].job) jobs.push_back(active[k].job);
  }
  return jobs;
}

// Every tensor of file `i`: each job's task for it.
std::vector<TaskRow> file_rows(const std::vector<const JobState*>& jobs, const std::vector<TensorSpec>& tensors) {
  std::vector<TaskRow> rows;
  for (const auto& t : tensors) {
    TaskRow& row = rows.emplace_back();
    for (const JobState* job : jobs) row.push_back(job->task_by_name.at(t.name));
  }
  return rows;
}

// Writes file `i` of every output in `outcome.active` in one pass over its tensors.
void write_file(size_t i, FileOutcome& outcome, NonfiniteBudget& budget, unsigned lookahead,
                const std::function<void(uint64_t)>& progress) {
  const auto& active = outcome.active;
  std::vector<std::unique_ptr<TensorFileWriter>> writers;
  std::vector<TensorFileWriter*> raw_writers;
  for (const auto& out : active) {
    writers.push_back(out.slot->sink->open(i, out.slot->staging->path()));
    raw_writers.push_back(writers.back().get());
  }
  const std::vector<const JobState*> jobs = file_jobs(active);
  AsyncSink sink(2 * active.size() + 2, kMergeBlockElements * 4);
  TaskExecutor executor(file_groups(active), sink, raw_writers);
  const std::vector<TaskRow> rows = file_rows(jobs, writers.front()->order());
  executor.run_all(rows, lookahead, [&](uint64_t bytes) {
    progress(bytes);
    for (size_t k = 0; k < active.size(); ++k) budget.check(active[k], executor.nonfinite()[k]);
  });
  sink.drain();
  StageTimes times = executor.stage_times();
  times.write_s = sink.write_seconds();
  times.bytes_appended = sink.bytes_written();
  const auto sync_start = std::chrono::steady_clock::now();
  for (size_t k = 0; k < active.size(); ++k) {
    writers[k]->finish();
    outcome.bytes_written += writers[k]->total_size();
    OutputSlot& slot = *active[k].slot;
    slot.staging->write_text(slot.sink->files()[i].name + kDoneSuffix, slot.fingerprint);
    budget.add(slot, executor.nonfinite()[k]);
  }
  times.sync_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - sync_start).count();
  outcome.stages = times;
  outcome.nonfinite = executor.nonfinite();
  outcome.bytes_read = executor.bytes_read();
  outcome.bytes_skipped = executor.bytes_skipped();
  for (size_t g = 0; g < jobs.size(); ++g) outcome.vector_sums[jobs[g]->index] = executor.vector_sums(g);
}

// Bytes read so far over files written at once, reported as one total. Thread-safe.
class ReadProgress {
 public:
  ReadProgress(const JobProgress& progress, uint64_t total, size_t files)
      : progress_(progress), total_(total), per_file_(files, 0) {}

  void set(size_t file, uint64_t bytes) {
    if (!progress_) return;
    const std::lock_guard lock(mutex_);
    per_file_[file] = bytes;
    uint64_t sum = 0;
    for (uint64_t b : per_file_) sum += b;
    progress_(sum, total_);
  }

 private:
  const JobProgress& progress_;
  uint64_t total_;
  std::mutex mutex_;
  std::vector<uint64_t> per_file_;
};

// Bytes the pass reads for file `i` (`tensors`) of the jobs that write it.
uint64_t file_bytes_to_read(const std::vector<ActiveOutput>& active, const std::vector<TensorSpec>& tensors) {
  const std::vector<OutputGroup> groups = file_groups(active);
  uint64_t bytes = 0;
  for (const TaskRow& row : file_rows(file_jobs(active), tensors)) bytes += row_bytes_to_read(row, groups);
  return bytes;
}

// Writes every file some output still needs with the first job's threads:
// that many files at once, and the threads left per file run later
// tensors' statistics passes ahead.
void write_files(std::vector<JobState>& jobs, const JobProgress& progress) {
  const std::vector<SinkFile>& layout = jobs.front().slots.front().sink->files();
  std::vector<FileOutcome> outcomes(layout.size());
  std::vector<uint64_t> bytes_to_read(layout.size());
  std::vector<size_t> to_write;
  uint64_t total = 0;
  for (size_t i = 0; i < layout.size(); ++i) {
    for (auto& job : jobs) {
      for (auto& slot : job.slots) {
        if (slot.needs_file(i)) outcomes[i].active.push_back({&job, &slot});
      }
    }
    if (outcomes[i].active.empty()) continue;
    to_write.push_back(i);
    bytes_to_read[i] = file_bytes_to_read(outcomes[i].active, layout[i].tensors);
    total += bytes_to_read[i];
  }
  ReadProgress read(progress, total, layout.size());
  NonfiniteBudget budget;
  std::atomic<uint64_t> files_written = 0;
  const unsigned threads = jobs.front().job->spec->threads;
  const size_t at_once = std::clamp<size_t>(threads, 1, std::max<size_t>(to_write.size(), 1));
  const auto lookahead = static_cast<unsigned>(std::max<size_t>(threads, 1) / at_once - 1);
  ThreadPool pool(at_once);
  pool.parallel_for(to_write.size(), [&](size_t n) {
    const size_t i = to_write[n];
    write_file(i, outcomes[i], budget, lookahead, [&](uint64_t bytes) {
      read.set(i, bytes);
      test_hooks::maybe_kill_in_file(i + 1, bytes, bytes_to_read[i]);
    });
    test_hooks::maybe_kill_after_shards(++files_written);
  });
  for (const FileOutcome& outcome : outcomes) {
    for (size_t k = 0; k < outcome.active.size(); ++k) {
      for (const auto& entry : outcome.nonfinite[k]) outcome.active[k].slot->result.nonfinite.push_back(entry);
    }
    for (auto& job : jobs) {  // the pass's reads, writes and times are every job's
      job.result.bytes_read += outcome.bytes_read;
      job.result.bytes_skipped += outcome.bytes_skipped;
      job.result.bytes_written += outcome.bytes_written;
      job.result.stages += outcome.stages;
    }
    for (const auto& [job, sums] : outcome.vector_sums) {
      for (const auto& [kind, s] : sums) jobs[job].result.vector_by_kind[kind] += s;
    }
  }
}

void check_inputs_unchanged(const JobInputs& inputs) {
  for (const auto& [role, model] : input_roles(inputs)) {
    for (const auto& f : model->shards()) f->check_unchanged();
  }
}

void finish_slot(OutputSlot& slot, const JobInputs& inputs, const JobSpec& spec, const JobPlan& plan,
                 const JobResult& result) {
  slot.sink->finish(*slot.staging);
  if (!slot.sink->is_model_folder()) {  // the files hold everything; the partial folder goes once every output is in place
    std::vector<std::string> names;
    for (const auto& file : slot.sink->files()) names.push_back(file.name);
    slot.staging->write_text(kCommittedMarker, committed_text(slot, slot.staging->path()));
    test_hooks::maybe_kill_while_finishing();
    slot.staging->commit_files(names);
    test_hooks::maybe_kill_while_finishing();
    return;
  }
  const JobKindInfo& kind = job_kind_info(spec.kind);
  const ModelFolder& source = kind.adds_to_target ? *inputs.target : *inputs.vectors.front().post;
  copy_aux_files(source, *slot.staging, {.only_config = !kind.adds_to_target, .dtype = spec.out_dtype});
  slot.staging->write_text("README.md", model_card(inputs, spec, plan, slot.result, result));
  if (!spec.recipe_text.empty()) slot.staging->write_text(kRecipeFile, spec.recipe_text);
  test_hooks::maybe_kill_while_finishing();
  slot.staging->write_text(kProvenanceFile,
                           provenance(inputs, spec, plan, slot.result, slot.fingerprint, result).dump(2) + "\n");
  test_hooks::maybe_kill_while_finishing();
  for (const auto& file : slot.sink->files()) fs::remove(slot.staging->file(file.name + kDoneSuffix));
  fs::remove(slot.staging->file(kJobMarker));
  test_hooks::maybe_kill_while_finishing();
  slot.staging->commit();
}

}  // namespace

const JobKindInfo& job_kind_info(JobKind kind) {
  static const JobKindInfo kMerge{"merge", "merge", true, true};
  static const JobKindInfo kApply{"apply", "apply", true, true};
  static const JobKindInfo kExtract{"extract", kVectorKind, false, true};
  static const JobKindInfo kExport{"export", "export", true, false};
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

std::string vector_role(const JobInputs& inputs, size_t i, const char* role) {
  return inputs.vectors.size() == 1 ? std::string(role) : fmt::format("{} {}", role, i + 1);
}

std::string job_formula(const JobSpec& spec, const JobInputs& inputs) {
  const JobKindInfo& kind = job_kind_info(spec.kind);
  const MergeMethod& method = job_method(spec);
  if (!kind.reads_vector) return "target";
  std::vector<std::string> vectors;
  for (size_t i = 0; i < inputs.vectors.size(); ++i) {
    const bool saved = inputs.vectors[i].pre == nullptr;
    vectors.push_back(saved ? vector_role(inputs, i, "vector")
                            : fmt::format("{} - {}", vector_role(inputs, i, "post"), vector_role(inputs, i, "pre")));
  }
  if (!kind.adds_to_target) return vectors.front();
  if (vectors.size() == 1 && method.name() == kDefaultMergeMethod) {
    return inputs.vectors[0].pre ? "target + w * (post - pre)" : "target + w * vector";
  }
  return fmt::format("target + w * {}({})", method.name(), fmt::join(vectors, ", "));
}

bool is_plain_task_arithmetic(const JobSpec& spec, const JobInputs& inputs) {
  if (job_method(spec).name() != kDefaultMergeMethod || inputs.vectors.size() != 1) return false;
  const auto is_default = [&](const ParamSettings& settings) {
    for (const auto& [name, setting] : settings) {
      const MethodParam* declared = find_setting_param(job_method(spec), name);
      if (!declared || !setting.is_constant() || setting.value_at(*declared, "", 0) != declared->default_value) {
        return false;
      }
    }
    return true;
  };
  return is_default(spec.method_params) && std::ranges::all_of(spec.vector_params, is_default);
}

JobPlan plan_tasks(const JobInputs& inputs, const JobSpec& spec) {
  JobPlan plan;
  const JobKindInfo& kind = job_kind_info(spec.kind);
  check_inputs(inputs, spec);
  check_settings(spec);
  plan.merge_params = merge_params(spec);
  const std::vector<MergePlan> plans = check_compatibility(inputs, kind);
  plan.compatibility = join_plans(plans);
  if (!plan.compatibility.compatible()) return plan;
  const uint64_t layers = layer_count(kind.adds_to_target ? *inputs.target : *inputs.vectors.front().post);
  for (size_t i = 0; i < plan.compatibility.tensors.size(); ++i) {
    plan.tasks.push_back(make_task({plans, i, plan.compatibility, layers}, spec));
  }
  if (writes_gguf(spec)) plan_gguf(plan, *inputs.target, spec);
  const OutputGroup group{&job_method(spec), &plan.merge_params, {}, {}};
  for (const auto& t : plan.tasks) plan.bytes_to_read += row_bytes_to_read({&t}, std::span(&group, 1));
  return plan;
}

JobPlan plan_job(const JobInputs& inputs, const JobSpec& spec) {
  const JobKindInfo& kind = job_kind_info(spec.kind);
  if (spec.output.empty()) fail(ErrorKind::kUsage, "the output path is empty (-o OUT)");
  if (kind.adds_to_target && kind.reads_vector) check_weights(spec);
  if (spec.out_dtype && !is_arithmetic(*spec.out_dtype)) {
    fail(ErrorKind::kUsage, "output dtype {} is not BF16, F16 or F32", dtype_name(*spec.out_dtype));
  }
  check_format(spec);
  JobPlan plan = plan_tasks(inputs, spec);
  if (!plan.compatibility.compatible()) {
    for (const auto& f : plan.compatibility.findings) {
      if (f.severity == Severity::kError) {
        fail(ErrorKind::kIncompatible, "{}: {} ({} error(s) in all; `rvec check` lists them)", f.subject, f.message,
             plan.compatibility.count(Severity::kError));
      }
    }
  }
  const std::vector<double> weights = output_weights(spec);  // never empty: check_weights ran
  for (double w : weights) plan.outputs.push_back(output_path(spec, w, weights.size()));
  plan.bytes_per_output = output_sink(spec, inputs, plan, weights.front(), plan.outputs.front())->total_bytes();
  std::vector<fs::path> outputs = plan.outputs;
  outputs.push_back(spec.output);
  check_outputs_apart_from_inputs(inputs, outputs);
  check_output_names(plan.outputs);
  for (size_t k = 0; k < weights.size(); ++k) {
    check_file_names(*output_sink(spec, inputs, plan, weights[k], plan.outputs[k]), plan.outputs[k]);
  }
  plan.free_bytes = free_bytes_at(spec.output);
  return plan;
}

namespace {

// Tasks of several jobs may share a pass when they describe the same output
// tensor: the same target tensor, dtype, shape, row order, and (where both
// combine) the same combined range.
bool same_output_tensor(const TensorTask& a, const TensorTask& b) {
  return a.name == b.name && a.out_dtype == b.out_dtype && a.out_shape == b.out_shape && a.base == b.base &&
         a.interleave_heads == b.interleave_heads && a.generated == b.generated &&
         (a.copied() || b.copied() || a.combined_elements == b.combined_elements);
}

bool same_files(const ModelSink& a, const ModelSink& b) {
  if (a.files().size() != b.files().size()) return false;
  for (size_t i = 0; i < a.files().size(); ++i) {
    const auto &x = a.files()[i].tensors, &y = b.files()[i].tensors;
    if (x.size() != y.size()) return false;
    for (size_t t = 0; t < x.size(); ++t) {
      if (x[t].name != y[t].name || x[t].dtype != y[t].dtype || x[t].shape != y[t].shape) return false;
    }
  }
  return true;
}

// Whether two planned jobs write the same files and output tensors (what
// check_shareable finds once their outputs are prepared).
bool can_share(const SharedJob& a, const SharedJob& b) {
  const JobSpec &x = *a.spec, &y = *b.spec;
  if (x.format != y.format || x.max_shard_bytes != y.max_shard_bytes || x.gguf_type != y.gguf_type ||
      x.gguf_split_bytes != y.gguf_split_bytes || a.plan->tasks.size() != b.plan->tasks.size()) {
    return false;
  }
  for (size_t t = 0; t < a.plan->tasks.size(); ++t) {
    if (!same_output_tensor(a.plan->tasks[t], b.plan->tasks[t])) return false;
  }
  return true;
}

// Every job's task of a tensor is compared with the first job's, and where
// it combines with the first job's that combines it: a task that copies the
// tensor agrees with any, so two jobs that combine other ranges would
// otherwise both pass against a first job that copies.
void check_shareable(const std::vector<JobState>& jobs) {
  const JobState& first = jobs.front();
  std::map<std::string, const JobState*> first_combining;
  for (const JobState& job : jobs) {
    if (!same_files(*first.slots.front().sink, *job.slots.front().sink) ||
        job.job->spec->format != first.job->spec->format) {
      fail(ErrorKind::kUsage, "{} and {} cannot share a read pass: their outputs' files differ",
           first.job->spec->output.string(), job.job->spec->output.string());
    }
    for (const auto& [name, task] : job.task_by_name) {
      const auto it = first.task_by_name.find(name);
      const JobState* other = &first;
      bool same = it != first.task_by_name.end() && same_output_tensor(*it->second, *task);
      if (same && !task->copied()) {
        other = first_combining.try_emplace(name, &job).first->second;
        same = same_output_tensor(*other->task_by_name.at(name), *task);
      }
      if (!same) {
        fail(ErrorKind::kUsage, "{} and {} cannot share a read pass: tensor \"{}\" differs",
             other->job->spec->output.string(), job.job->spec->output.string(), name);
      }
    }
  }
}

// Drops the locks newest first, so that the folders the first lock made for
// its lock file (the -o folder of several outputs) are empty when it goes,
// and go with it.
void release_locks(std::vector<JobState>& states) {
  for (auto state = states.rbegin(); state != states.rend(); ++state) {
    for (auto slot = state->slots.rbegin(); slot != state->slots.rend(); ++slot) slot->lock.reset();
  }
}

std::vector<JobState> start_jobs(std::span<const SharedJob> jobs) {
  if (jobs.empty()) fail(ErrorKind::kUsage, "no job to run");
  std::vector<JobState> states(jobs.size());
  for (size_t j = 0; j < jobs.size(); ++j) {
    states[j].index = j;
    states[j].job = &jobs[j];
    states[j].slots = prepare_outputs(*jobs[j].inputs, *jobs[j].spec, *jobs[j].plan);
    for (const auto& t : jobs[j].plan->tasks) states[j].task_by_name[t.name] = &t;
  }
  check_shareable(states);
  std::vector<std::vector<OutputSlot>*> slots;
  for (auto& state : states) slots.push_back(&state.slots);
  check_free_space(slots, jobs.front().spec->output);
  try {
    for (auto& state : states) {  // from here on the outputs are this run's: looked at again under their locks
      for (auto& slot : state.slots) {
        if (slot.result.already_complete) {  // nothing to write: no lock, no write access needed
          OutputLock::remove_stale(slot.result.path);
          continue;
        }
        slot.lock = std::make_unique<OutputLock>(slot.result.path);
        inspect_slot(slot, *state.job->spec);
      }
    }
    for (auto& state : states) {
      for (auto& slot : state.slots) open_slot(slot, *state.job->spec);
    }
  } catch (...) {
    release_locks(states);
    throw;
  }
  return states;
}

// Every output is in place: the GGUF outputs' partial folders, which hold
// only markers now, go. One that an earlier run put in place is removed
// under its lock (this run's, when it took it before finding the output
// complete), and left when another run holds that.
void remove_committed_markers(std::vector<JobState>& states) {
  for (auto& state : states) {
    for (auto& slot : state.slots) {
      if (slot.sink->is_model_folder()) continue;
      if (slot.staging) {
        slot.staging->remove();
        continue;
      }
      try {
        const auto lock = slot.lock ? nullptr : std::make_unique<OutputLock>(slot.result.path);
        std::error_code ec;
        if (committed_by_same_run(slot)) fs::remove_all(staging_path_for(slot.result.path), ec);
      } catch (const Error&) {
      }
    }
  }
}

void finish_job(JobState& state) {
  const SharedJob& job = *state.job;
  check_inputs_unchanged(*job.inputs);
  JobResult& result = state.result;
  result.vector_stats_complete = true;
  for (const auto& slot : state.slots) {
    result.vector_stats_complete = result.vector_stats_complete && !slot.result.already_complete && slot.result.shards_reused == 0;
  }
  for (auto& slot : state.slots) {
    if (!slot.result.already_complete) finish_slot(slot, *job.inputs, *job.spec, *job.plan, result);
    result.outputs.push_back(slot.result);
  }
}

}  // namespace

std::vector<JobResult> run_jobs(std::span<const SharedJob> jobs, const JobProgress& progress) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<JobState> states = start_jobs(jobs);
  write_files(states, progress);
  std::vector<JobResult> results;
  for (auto& state : states) {
    finish_job(state);
    state.result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    results.push_back(std::move(state.result));
  }
  remove_committed_markers(states);
  return results;
}

std::vector<std::vector<SharedJob>> shared_passes(std::span<const SharedJob> jobs) {
  std::vector<std::vector<SharedJob>> passes;
  for (const SharedJob& job : jobs) {
    const auto fits = [&](const std::vector<SharedJob>& pass) {
      return std::ranges::all_of(pass, [&](const SharedJob& other) { return can_share(other, job); });
    };
    const auto pass = std::ranges::find_if(passes, fits);
    if (pass == passes.end()) passes.push_back({job});
    else pass->push_back(job);
  }
  return passes;
}

JobResult run_job(const JobInputs& inputs, const JobSpec& spec, const JobPlan& plan, const JobProgress& progress) {
  const SharedJob job{&inputs, &spec, &plan};
  return std::move(run_jobs(std::span(&job, 1), progress).front());
}

}  // namespace rvec
