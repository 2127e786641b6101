// Which tensor of the output comes from what: the compatibility analysis that
// `rvec check` reports and that every merge executes.
//
// The output is the target's model: its tensor names, shapes and dtypes. For
// each target tensor the plan says whether it is combined as
// `target + w * (post - pre)` (on all elements, or on the leading rows all
// three models share for embeddings and lm_head) or copied from the target,
// and why. Problems are Findings; any kError finding makes the models
// incompatible.
#pragma once

#include <string>
#include <vector>

#include "hf/model_folder.hpp"

namespace rvec {

enum class Severity { kError, kWarning, kNote };
std::string_view severity_name(Severity severity);

struct Finding {
  Severity severity;
  std::string subject;  // the model folder and/or tensor concerned
  std::string message;
};

enum class TensorAction { kCombine, kCopyTarget };

struct TensorPlan {
  const ModelTensor* target = nullptr;
  const ModelTensor* pre = nullptr;   // null when copied, or when post is a vector
  const ModelTensor* post = nullptr;  // null when copied
  TensorAction action = TensorAction::kCopyTarget;
  uint64_t combined_rows = 0;  // leading rows combined (== all rows unless the vocabularies differ)
  std::string note;            // why copied, or how rows were matched

  const std::string& name() const { return target->name(); }
  uint64_t rows() const { return target->info->shape.empty() ? 1 : target->info->shape[0]; }
};

struct MergePlan {
  std::vector<TensorPlan> tensors;  // in the target's tensor order
  std::vector<Finding> findings;

  bool compatible() const;
  size_t count(Severity severity) const;
};

// The models of a merge. `pre` is absent when `post` is a saved vector
// (apply). Role names appear in messages ("post (path/to/model)").
struct MergeInputs {
  const ModelFolder* pre;
  const ModelFolder& post;
  const ModelFolder& target;
  std::string post_role = "post";
  std::string target_role = "target";
  bool post_dtype_may_differ = false;  // a vector may be stored in F32 for a BF16 target
  std::string pre_role = "pre";
};

MergePlan plan_merge(const MergeInputs& models);

// Several vectors onto one target: the plans of each (same target, so the
// same tensors in the same order) joined. Findings of all, once each; a
// tensor is combined only if every vector can be combined into it, on the
// rows they all share (its pre/post are the first vector's).
MergePlan join_plans(const std::vector<MergePlan>& plans);

// Bytes of one output model (all target tensors at their dtypes, plus headers).
uint64_t output_tensor_bytes(const ModelFolder& target);

}  // namespace rvec
