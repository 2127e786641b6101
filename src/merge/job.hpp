// Executing merges: one read pass over the inputs, any number of outputs.
//
//   merge:   out_k = target + w_k * (post - pre)      (one folder per w_k)
//   extract: v     = post - pre                       (a vector folder)
//   apply:   out_k = target + w_k * v
//
// Per element the value is computed in f32 from the inputs' values and
// rounded once to the output dtype (round to nearest even):
//   d = f32(post - pre);  out = round(target + f32(w * d))
// so `extract --dtype F32` followed by `apply` gives the same bits as `merge`.
//
// Memory is bounded by a few block buffers (independent of model size and of
// the number of weights); inputs are read once with pread; outputs are
// assembled in hidden staging folders and renamed into place when complete.
// A killed run resumes: shards already written and verified are kept.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "merge/plan.hpp"
#include "merge/rules.hpp"
#include "numeric/kernels.hpp"

namespace rvec {

enum class JobKind { kMerge, kApply, kExtract };
std::string_view job_kind_name(JobKind kind);

struct JobSpec {
  JobKind kind = JobKind::kMerge;
  std::vector<double> weights;  // extract: {1}
  std::vector<TensorRule> rules;
  std::optional<DType> out_dtype;  // default: the target's (extract: post's)
  uint64_t max_shard_bytes = 5'000'000'000;
  std::filesystem::path output;  // one weight: the model folder; several: output/w<w>/
  bool overwrite = false;
  std::string command_line;  // recorded in provenance
  std::string recipe_text;   // the YAML recipe (saved as rvec_recipe.yaml in every output)
};

struct JobInputs {
  const ModelFolder* pre = nullptr;     // merge, extract
  const ModelFolder* post = nullptr;    // merge, extract; the vector for apply
  const ModelFolder* target = nullptr;  // merge, apply
};

// One output tensor and where its values come from.
struct TensorTask {
  std::string name;
  DType out_dtype;
  std::vector<uint64_t> out_shape;
  const ModelTensor* base = nullptr;   // target; null for extract
  const ModelTensor* plus = nullptr;   // post, or the vector
  const ModelTensor* minus = nullptr;  // pre; null for apply
  uint64_t combined_elements = 0;      // leading elements that receive the vector
  double scale = 1.0;                  // from the first matching rule
  std::string rule;                    // that rule, described
  std::string note;                    // row policy, or why copied

  uint64_t element_count() const;
  bool copied() const { return combined_elements == 0; }
};

struct JobPlan {
  MergePlan compatibility;
  std::vector<TensorTask> tasks;  // state-dict order
  std::vector<std::filesystem::path> outputs;  // one per weight
  uint64_t bytes_to_read = 0;
  uint64_t bytes_per_output = 0;  // safetensors files, headers included
  uint64_t free_bytes = 0;        // at the output location
};

// Builds the plan; throws kIncompatible (with the first error) when the
// compatibility check fails, kUsage for bad weights or paths.
JobPlan plan_job(const JobInputs& inputs, const JobSpec& spec);

struct OutputResult {
  std::filesystem::path path;
  double w = 0;
  bool already_complete = false;  // found finished from an earlier identical run
  size_t shards_reused = 0;       // verified shards kept from an interrupted run
  std::vector<std::pair<std::string, uint64_t>> nonfinite;  // tensor, new NaN/Inf count
};

struct JobResult {
  std::vector<OutputResult> outputs;
  // ||v||^2 (a_sq) and ||pre||^2 (base_sq) of the vector per module kind, over
  // the tensors combined in this run; complete only if no shard was reused.
  std::map<std::string, kernels::DeltaSums> vector_by_kind;
  bool vector_stats_complete = false;
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  double seconds = 0;
};

using JobProgress = std::function<void(uint64_t bytes_read, uint64_t bytes_total)>;

JobResult run_job(const JobInputs& inputs, const JobSpec& spec, const JobPlan& plan,
                  const JobProgress& progress = {});

// "w0.25", "w1", "w-0.5": the folder name of one weight in a sweep.
std::string weight_folder_name(double w);

}  // namespace rvec
