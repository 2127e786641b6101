// task_arithmetic: δ = Σ_i w_i v_i (arXiv 2212.04089), the reasoning-vector
// paper's method. With one vector of weight 1, δ is that vector, bit for bit.
// `normalize: true` divides by Σ_i w_i (1 where |Σ_i w_i| < 1e-8), as mergekit's
// option of the same name does.
#include "merge/methods/registry.hpp"
#include "merge/methods/trim_and_sum.hpp"

namespace rvec {
namespace {

class TaskArithmeticCombiner final : public TensorCombiner {
 public:
  TaskArithmeticCombiner(std::span<const double> weights, bool normalize)
      : weights_(weights.begin(), weights.end()), normalize_(normalize) {}

  const float* combine(uint64_t, size_t n, std::span<const float* const> deltas, float* scratch) override {
    // The f32 sum starts from the first term, so that a single -0 stays -0.
    return weighted_sum(weights_, deltas, n, normalize_, scratch);
  }

 private:
  std::vector<float> weights_;
  bool normalize_;
};

class TaskArithmetic final : public MergeMethod {
 public:
  std::string_view name() const override { return "task_arithmetic"; }
  const std::vector<MethodParam>& params() const override {
    static const std::vector<MethodParam> params = {normalize_param(false)};
    return params;
  }
  std::string formula() const override { return "sum_i w_i * v_i"; }
  std::unique_ptr<TensorCombiner> begin_tensor(const TensorContext& context) const override {
    const auto normalize = context.params->find("normalize");
    return std::make_unique<TaskArithmeticCombiner>(context.vector_weights,
                                                    normalize != context.params->end() && normalize->second != 0);
  }
};

}  // namespace

const MergeMethod& task_arithmetic_method() {
  static const TaskArithmetic method;
  return method;
}

}  // namespace rvec
