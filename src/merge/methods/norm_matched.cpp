// norm_matched: every vector rescaled, tensor by tensor, to the norm of the
// first, then summed with the weights:
//
//   δ = w_0 u_0 + w_1 u_1 + ...,  u_i = f32(f_i · v_i)   (f32, in vector order)
//   f_i = f32(||v_0|| / ||v_i||)          (norms in double, element order; 1 where ||v_i|| is 0)
//
// With the reasoning vector first at weight 0 and a control second at
// weight 1, δ is the control with the reasoning vector's per-tensor norms: a
// control that cannot fail for being smaller (rvec sweep's `match_norms`).
#include <cmath>

#include "merge/methods/registry.hpp"
#include "merge/methods/trim_and_sum.hpp"
#include "numeric/kernels.hpp"

namespace rvec {
namespace {

class NormMatchedCombiner final : public TensorCombiner {
 public:
  explicit NormMatchedCombiner(const TensorContext& context)
      : tensor_(context.name),
        sum_sq_(context.vector_weights.size(), 0.0), factors_(sum_sq_.size(), 1.0f), tiles_(sum_sq_.size()) {
    for (double w : context.vector_weights) weights_.push_back(static_cast<float>(w));
  }

  void observe(unsigned, size_t vector, uint64_t, std::span<const float> delta) override {
    double& sum = sum_sq_[vector];
    for (const float x : delta) sum += static_cast<double>(x) * static_cast<double>(x);
  }

  void end_pass(unsigned) override {
    for (size_t i = 0; i < factors_.size(); ++i) {
      if (!std::isfinite(sum_sq_[i])) fail_nonfinite_statistic(tensor_, i, "norm");
      if (sum_sq_[i] > 0) factors_[i] = static_cast<float>(std::sqrt(sum_sq_[0]) / std::sqrt(sum_sq_[i]));
    }
  }

  const float* combine(uint64_t, size_t n, std::span<const float* const> deltas, float* scratch) override {
    for (size_t i = 0; i < tiles_.size(); ++i) {
      tiles_[i].resize(n);
      kernels::scale(factors_[i], deltas[i], tiles_[i].data(), n);
      pointers_[i] = tiles_[i].data();
    }
    return weighted_sum(weights_, pointers_, n, false, scratch);
  }

 private:
  std::string tensor_;
  std::vector<double> sum_sq_;  // ||v_i||^2 in this tensor
  std::vector<float> weights_, factors_;
  std::vector<std::vector<float>> tiles_;  // f_i v_i of the current tile
  std::vector<const float*> pointers_ = std::vector<const float*>(tiles_.size());
};

class NormMatchedMethod final : public MergeMethod {
 public:
  std::string_view name() const override { return "norm_matched"; }
  const std::vector<MethodParam>& params() const override {
    static const std::vector<MethodParam> none;
    return none;
  }
  std::string formula() const override { return "sum_i w_i * (||v_0|| / ||v_i||) * v_i, norms per tensor"; }
  unsigned statistics_passes(const TensorContext&) const override { return 1; }
  std::unique_ptr<TensorCombiner> begin_tensor(const TensorContext& context) const override {
    return std::make_unique<NormMatchedCombiner>(context);
  }
};

}  // namespace

const MergeMethod& norm_matched_method() {
  static const NormMatchedMethod method;
  return method;
}

}  // namespace rvec
