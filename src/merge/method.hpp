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
// (the top-k threshold of magnitude trimming and TIES) asks for a statistics
// pass: the executor then streams the tensor's deltas through observe() once
// before the element pass. No method ever holds a tensor whole.
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
};

// Parameter values by name; a method's declared defaults fill the gaps.
using MethodParams = std::map<std::string, double>;

// What a combiner knows about the tensor it works on.
struct TensorContext {
  std::string_view name;
  uint64_t elements = 0;                 // elements that receive the vectors
  std::span<const double> vector_weights;  // w_i of each vector (1 for a single vector)
  const MethodParams* params = nullptr;  // complete: validated, defaults filled in
};

// The combination of one tensor. Created per tensor by the method; used by one
// thread at a time; lives until the tensor's element pass ends.
class TensorCombiner {
 public:
  virtual ~TensorCombiner() = default;

  // Statistics pass, only for methods that ask for one: the deltas of vector
  // `vector` for elements [first, first + delta.size()), in element order.
  virtual void observe(size_t /*vector*/, uint64_t /*first*/, std::span<const float> /*delta*/) {}

  // Element pass: deltas[i] points at vector i's delta for elements
  // [first, first + n). Returns δ for those elements: either `scratch` (n
  // floats the combiner may write) or one of the deltas, unchanged.
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
  // True if begin_tensor's combiner needs observe() over the whole tensor first.
  virtual bool needs_statistics_pass() const { return false; }

  virtual std::unique_ptr<TensorCombiner> begin_tensor(const TensorContext& context) const = 0;
};

// The registered methods, by name; null if there is none of that name.
const MergeMethod* find_merge_method(std::string_view name);
std::vector<std::string_view> merge_method_names();

// The method of that name, or a usage error listing the known ones.
const MergeMethod& merge_method(std::string_view name);

// `given` checked against the method's declared parameters (unknown names and
// values out of range are usage errors naming them), defaults filled in.
MethodParams complete_params(const MergeMethod& method, const MethodParams& given);

inline constexpr std::string_view kDefaultMergeMethod = "task_arithmetic";

}  // namespace rvec
