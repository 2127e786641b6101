// Merge methods: how the vectors of one tensor become the delta that is added
// to the target. Every method sits behind this interface, in its own file
// under merge/methods/, registered by one line in merge/methods/registry.cpp.
//
// The executor (merge/executor.hpp) streams each tensor block by block. Per
// tile of elements it computes every vector's delta in f32,
//   d_i = post_i - pre_i            (or the values of a saved vector),
// asks the method's TensorCombiner for the combined delta δ, and writes, for
// every weight w_k of the sweep,
//   out_k = round(target + f32(w_k * scale * δ))   (one rounding, nearest even)
// or δ itself when the output is the vector (extract).
//
// A method that must see a whole tensor before it can decide on any element
// (the top-k threshold of magnitude trimming and TIES) asks for statistics
// passes: the executor then streams the tensor's deltas through observe() as
// many times as the method asks, before the element pass. No method ever
// holds a tensor whole.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace rvec {

// A parameter a method declares: recipes and flags are checked against these.
struct MethodParam {
  std::string name;
  double default_value = 0;
  double min = 0;  // inclusive
  double max = 0;  // inclusive
  std::string help;
  // Non-empty: the value is one of these words, held as its index (min 0,
  // max choices.size() - 1).
  std::vector<std::string> choices = {};
  // True: each vector may have its own value, and a recipe may make it vary
  // over the layers (density, gamma). False: one value for the whole merge.
  bool per_vector = false;
  bool whole = false;  // whole numbers only (a seed)
};

// Parameter values by name; a method's declared defaults fill the gaps.
using MethodParams = std::map<std::string, double>;

// What a combiner knows about the tensor it works on.
struct TensorContext {
  std::string_view name;
  uint64_t elements = 0;                   // elements that receive the vectors
  std::span<const double> vector_weights;  // w_i of each vector (1 for a single vector)
  const MethodParams* params = nullptr;    // the merge's values: complete, validated
  // Each vector's values for this tensor (per-vector and per-layer values
  // applied; the merge-wide ones as in `params`).
  std::span<const MethodParams> vector_params;
};

// The combination of one tensor. Created per tensor by the method; used by one
// thread at a time; lives until the tensor's element pass ends.
class TensorCombiner {
 public:
  virtual ~TensorCombiner() = default;

  // Statistics passes 0, 1, ... (as many as the method's statistics_passes()
  // asked for): the deltas of vector `vector` for elements
  // [first, first + delta.size()), every vector's in element order; then
  // end_pass(pass) once the whole tensor has been seen.
  virtual void observe(unsigned /*pass*/, size_t /*vector*/, uint64_t /*first*/, std::span<const float> /*delta*/) {}
  virtual void end_pass(unsigned /*pass*/) {}
  // Asked before each pass after the first: false when what the earlier
  // passes saw already answers it (the pass is then neither read for this
  // combiner nor observed, and its end_pass is not called).
  virtual bool needs_pass(unsigned /*pass*/) const { return true; }

  // Element pass, tile by tile in element order: deltas[i] points at vector
  // i's delta for elements [first, first + n). Returns δ for those elements:
  // `scratch` (n floats the combiner may write), one of the deltas,
  // unchanged, or a buffer of the combiner's own; valid until the next call.
  virtual const float* combine(uint64_t first, size_t n, std::span<const float* const> deltas, float* scratch) = 0;
};

class MergeMethod {
 public:
  virtual ~MergeMethod() = default;

  // "task_arithmetic": the name recipes and --method use.
  virtual std::string_view name() const = 0;
  // The parameters it takes (beyond each vector's weight).
  virtual const std::vector<MethodParam>& params() const = 0;
  // δ in words for provenance and the model card, e.g. "sum_i w_i * v_i".
  virtual std::string formula() const = 0;
  // How many times begin_tensor's combiner must observe() the whole tensor
  // before its element pass (0: never), at most. A pure function of the
  // context, so the plan can bound the bytes a job reads.
  virtual unsigned statistics_passes(const TensorContext& /*context*/) const { return 0; }

  virtual std::unique_ptr<TensorCombiner> begin_tensor(const TensorContext& context) const = 0;
};

// Refuses a tensor whose vector `vector` (0-based) gave a statistic (an l1
// sum, a norm) that is NaN or Inf: a NaN or Inf in the vector, which the
// method would spread over the whole tensor. An input error naming both.
[[noreturn]] void fail_nonfinite_statistic(std::string_view tensor, size_t vector, std::string_view statistic);

// The registered methods, by name; null if there is none of that name.
const MergeMethod* find_merge_method(std::string_view name);
std::vector<std::string_view> merge_method_names();

// The method of that name, or a usage error listing the known ones.
const MergeMethod& merge_method(std::string_view name);

// `given` checked against the method's declared parameters (unknown names and
// values out of range are usage errors naming them), defaults filled in.
MethodParams complete_params(const MergeMethod& method, const MethodParams& given);

// The declared parameter of that name, or null.
const MethodParam* find_param(const MergeMethod& method, std::string_view name);

// The declaration of every vector's weight w_i (any method takes it).
const MethodParam& vector_weight_param();
// The parameter a setting of that name sets: the weight or a declared one; null if neither.
const MethodParam* find_setting_param(const MergeMethod& method, std::string_view name);

// Why `value` is not a value of `param` ("= 1.5 is outside [0, 1] (...)"), or
// empty when it is one.
std::string param_value_problem(const MethodParam& param, double value);

// A value as recipes write it: the word of a choice, else the number ("0.2", "ties").
std::string param_text(const MethodParam& param, double value);

inline constexpr std::string_view kDefaultMergeMethod = "task_arithmetic";

}  // namespace rvec
