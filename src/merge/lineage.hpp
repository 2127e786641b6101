// Lineage checks: is post really a fine-tune of pre, and target too?
//
// One streaming pass over pre, post, target (and optional candidate parents)
// accumulates, per tensor, in f64: ||pre||^2, ||post - pre||^2,
// ||target - pre||^2 and <post - pre, target - pre>. From these come the
// relative size of each fine-tune and the cosine between the two deltas,
// per tensor, per module kind and per layer; thresholds turn them into a
// verdict (docs/lineage.md explains and justifies them).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "merge/plan.hpp"
#include "numeric/kernels.hpp"

namespace rvec {

struct DeltaStats {
  kernels::DeltaSums sums;
  uint64_t elements = 0;
  double rel_post() const;    // ||post - pre|| / ||pre||
  double rel_target() const;  // ||target - pre|| / ||pre||
  double cosine() const;      // cos(post - pre, target - pre); 0 when a delta is 0
};

struct TensorLineage {
  std::string name;
  std::string kind;
  int64_t layer = -1;  // -1: not in a layer
  DeltaStats stats;
};

struct CandidateResult {
  std::string path;
  double rel_post = 0;      // ||post - candidate|| / ||candidate|| over the matrices it shares with post
  uint64_t tensors_compared = 0;
  uint64_t tensors_skipped = 0;  // missing or shaped differently
};

enum class LineageVerdict { kFineTune, kSuspicious, kUnrelated, kNonFinite };
std::string_view verdict_name(LineageVerdict verdict);

// Thresholds on the relative delta size (see docs/lineage.md).
inline constexpr double kFineTuneMaxRel = 0.1;
inline constexpr double kUnrelatedMinRel = 0.5;
inline constexpr double kOverlapCosine = 0.5;
// kNonFinite when the size itself is NaN or Inf (the weights hold NaN/Inf).
LineageVerdict classify(double relative_delta);

// NaN/Inf values one input holds among the elements streamed.
struct NonfiniteWeights {
  uint64_t count = 0;
  std::string first_tensor;  // where the first one is
};

struct LineageReport {
  std::vector<TensorLineage> tensors;
  std::map<std::string, DeltaStats> by_kind;
  std::map<int64_t, DeltaStats> by_layer;
  DeltaStats total;
  // Matrices only (tensors with two or more dimensions): what the verdicts use.
  // Norm weights sit near 1 while matrix weights are ~0.02, so in a small
  // model the norms would dominate ||pre|| and hide any change to the matrices.
  DeltaStats matrices;
  LineageVerdict post_verdict = LineageVerdict::kFineTune;
  LineageVerdict target_verdict = LineageVerdict::kFineTune;
  bool deltas_overlap = false;  // cosine above kOverlapCosine
  std::vector<CandidateResult> candidates;  // sorted, best (smallest rel_post) first
  // "pre", "post", "target": inputs holding NaN/Inf (a merge would spread them).
  std::map<std::string, NonfiniteWeights> nonfinite;
  uint64_t bytes_read = 0;
};

using LineageProgress = std::function<void(uint64_t bytes_read, uint64_t bytes_total)>;

// Streams the tensors `plan` combines (plan_merge of pre, post, target), once.
LineageReport analyse_lineage(const MergePlan& plan, const std::vector<const ModelFolder*>& candidates,
                              const LineageProgress& progress = {});

}  // namespace rvec
