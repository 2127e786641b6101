// Merge jobs: plan, then execute, every output of one job in one read pass.
//
//   merge:   out_k = target + w_k * δ(v_1, ..., v_n)   (one folder per w_k)
//            v_i = post_i - pre_i, or a saved vector
//   extract: v     = post - pre                        (a vector folder)
//   apply:   out_k = target + w_k * δ(v)
//   export:  out   = target                            (a GGUF file of one model)
//
// δ is the merge method's combination of the vectors, each with its own
// weight w_i and parameters (task_arithmetic of one vector of weight 1: the
// vector itself). The kinds are input-role configurations of one executor
// (merge/executor.hpp), described as data by job_kind_info(). Per element the
// value is computed in f32 and rounded once to the output dtype:
//   d = f32(post - pre);  out = round(target + f32(w * δ))
// so `extract --dtype F32` followed by `apply` gives the same bits as `merge`.
//
// Memory is bounded by a few block buffers (independent of model size and of
// the number of weights); inputs are read once with pread; outputs are
// written through a ModelSink into hidden staging folders and renamed into
// place when complete. A killed run resumes: files already written and
// verified are kept. An output is a safetensors model folder, or with
// format kGguf one GGUF file (split files beside it above a size limit) that
// carries the tokenizer and provenance in its metadata (docs/gguf.md).
//
// Thread-safety: plan_job and run_job use no shared state (run_job writes
// `threads` files at once on threads of its own); one job per output folder
// at a time (two jobs writing the same folder are not detected).
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "hf/gguf_export.hpp"
#include "merge/executor.hpp"
#include "merge/method.hpp"
#include "merge/param_setting.hpp"
#include "merge/plan.hpp"
#include "merge/rules.hpp"
#include "numeric/kernels.hpp"

namespace rvec {

enum class JobKind { kMerge, kApply, kExtract, kExport };

// rvec.kind of a saved vector (what `rvec apply` accepts).
inline constexpr const char* kVectorKind = "reasoning-vector";

// What a kind of job reads and writes.
struct JobKindInfo {
  std::string_view name;           // "merge", "apply", "extract", "export"
  std::string_view metadata_kind;  // rvec.kind in every output shard
  bool adds_to_target;             // out = target + w δ (export: out = target); otherwise out = δ (one output)
  bool reads_vector;               // false for export, which copies the target alone
};
const JobKindInfo& job_kind_info(JobKind kind);
std::string_view job_kind_name(JobKind kind);

enum class OutputFormat { kSafetensors, kGguf };

struct JobSpec {
  JobKind kind = JobKind::kMerge;
  const MergeMethod* method = nullptr;  // null: task_arithmetic
  // The method's parameters for the whole merge, and the default of every
  // vector's own ones (weight, density, gamma), which may vary over the
  // layers (merge/param_setting.hpp). Validated against the method by plan_job.
  ParamSettings method_params;
  // Each vector's weight and per-vector parameters, in the order of
  // JobInputs::vectors; empty, or one entry per vector.
  std::vector<ParamSettings> vector_params;
  std::vector<double> weights;  // the outputs' w; extract: {1}
  std::vector<TensorRule> rules;
  std::optional<DType> out_dtype;  // default: the target's (extract: post's)
  uint64_t max_shard_bytes = 5'000'000'000;
  OutputFormat format = OutputFormat::kSafetensors;
  GgufFileType gguf_type = GgufFileType::kF16;  // format kGguf: the tensor types (replaces out_dtype)
  uint64_t gguf_split_bytes = 0;                // format kGguf: split above this many tensor bytes; 0: never
  // One weight: the model folder (GGUF: the .gguf file); several: output/w<w>/ (GGUF: output/w<w>.gguf).
  std::filesystem::path output;
  bool overwrite = false;
  // How the refusal of an existing output that this job may not reuse tells
  // the user to replace it (a sweep has no --overwrite).
  std::string replace_hint = "pass --overwrite to replace it";
  bool weight_required = false;  // a weight whose filters leave a tensor out is refused (mergekit's rule)
  // Output values that may become NaN/Inf (from finite inputs: an overflowing
  // weight) before the job stops with an error; 0 refuses any.
  uint64_t max_new_nonfinite = 0;
  std::string command_line;  // recorded in provenance
  std::string recipe_text;   // the YAML recipe (saved as rvec_recipe.yaml in every output)
  // Threads that compute: that many output files at once, and threads left
  // over per file run later tensors' statistics passes ahead. The bytes
  // written do not depend on it.
  unsigned threads = 1;
};

// One vector: post - pre, or (pre null) a vector saved by `rvec extract` in post.
struct VectorInput {
  const ModelFolder* pre = nullptr;
  const ModelFolder* post = nullptr;
};

struct JobInputs {
  std::vector<VectorInput> vectors;     // merge: one or more; extract: one pre/post pair; apply: one saved vector
  const ModelFolder* target = nullptr;  // merge, apply; the model for export
};

struct JobPlan {
  MergePlan compatibility;        // every vector's findings; a tensor is combined if every vector can be
  MethodParams merge_params;      // the method's merge-wide values, complete
  std::vector<TensorTask> tasks;  // state-dict order, each vector's weight and parameters resolved per tensor
                                  // (GGUF: the tensors the file holds)
  std::vector<GgufTensorChoice> gguf;  // format kGguf: names and file order
  std::vector<std::filesystem::path> outputs;  // one per weight
  uint64_t bytes_to_read = 0;     // at most: a statistics pass may turn out unneeded (JobResult::bytes_skipped)
  uint64_t bytes_per_output = 0;  // the output's files, headers included
  uint64_t free_bytes = 0;        // at the output location
};

// Builds the plan; throws kIncompatible (with the first error) when the
// compatibility check fails, kUsage for bad weights or paths.
JobPlan plan_job(const JobInputs& inputs, const JobSpec& spec);

// The part of the plan that needs no output: compatibility, method values
// and tasks (none when incompatible), bytes to read. What `rvec check`
// reports per method.
JobPlan plan_tasks(const JobInputs& inputs, const JobSpec& spec);

struct OutputResult {
  std::filesystem::path path;
  double w = 0;
  bool already_complete = false;  // found finished from an earlier identical run
  size_t shards_reused = 0;       // verified shards kept from an interrupted run
  NonfiniteCounts nonfinite;       // tensors with NaN/Inf the merge created
};

struct JobResult {
  std::vector<OutputResult> outputs;
  // ||v||^2 (a_sq) and ||pre||^2 (base_sq) of the vector per module kind, over
  // the tensors combined in this run; complete only if no shard was reused.
  std::map<std::string, kernels::DeltaSums> vector_by_kind;
  bool vector_stats_complete = false;
  uint64_t bytes_read = 0;
  // What the plan's bytes_to_read counted for statistics passes no method
  // needed in the end: bytes_read + bytes_skipped = the plan's bytes_to_read.
  uint64_t bytes_skipped = 0;
  uint64_t bytes_written = 0;
  double seconds = 0;
  StageTimes stages;
};

using JobProgress = std::function<void(uint64_t bytes_read, uint64_t bytes_total)>;

JobResult run_job(const JobInputs& inputs, const JobSpec& spec, const JobPlan& plan,
                  const JobProgress& progress = {});

// One of several jobs that share a read pass. The pointees must outlive run_jobs.
struct SharedJob {
  const JobInputs* inputs = nullptr;
  const JobSpec* spec = nullptr;
  const JobPlan* plan = nullptr;
};

// Runs jobs that write the same target's tensors in the same file layout
// (other methods, parameters, weights, rules or vectors: a sweep's variants,
// ablations and controls) in one pass: each input tensor is read once per
// block for all of them, and once per statistics pass any of them needs.
// Every output is the same, byte for byte, as its job run alone, and resumes
// like it. The pass's bytes, times and threads (the first job's `threads`)
// are reported in every job's result. Throws kUsage, before anything is
// written, when the jobs' outputs differ in their files or tensors.
std::vector<JobResult> run_jobs(std::span<const SharedJob> jobs, const JobProgress& progress = {});

// The jobs grouped into passes run_jobs accepts, in order: each job joins the
// first pass whose every job writes the same files and output tensors (a
// control whose post has another vocabulary combines other embedding rows,
// so it gets a pass of its own).
std::vector<std::vector<SharedJob>> shared_passes(std::span<const SharedJob> jobs);

// "w0.25", "w1", "w-0.5": the folder name of one weight in a sweep.
std::string weight_folder_name(double w);

// The job's method (task_arithmetic unless the spec names another).
const MergeMethod& job_method(const JobSpec& spec);

// "target + w * (post - pre)", "post - pre", "target + w * ties(post - pre)",
// "target + w * ties(post_1 - pre_1, vector_2)".
std::string job_formula(const JobSpec& spec, const JobInputs& inputs);

// True for one vector of weight 1 by task arithmetic with default settings:
// the job rvec did before methods existed (its fingerprints are kept).
bool is_plain_task_arithmetic(const JobSpec& spec, const JobInputs& inputs);

// The role of vector i's models in messages: "pre", "post", "vector" for a
// job of one vector; "pre 2", "post 2", "vector 2" with several.
std::string vector_role(const JobInputs& inputs, size_t i, const char* role);

}  // namespace rvec
