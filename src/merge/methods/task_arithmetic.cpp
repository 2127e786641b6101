// task_arithmetic: δ = Σ_i w_i v_i (arXiv 2212.04089), the reasoning-vector
// paper's method. With one vector of weight 1, δ is that vector, bit for bit.
#include "merge/methods/registry.hpp"

namespace rvec {
namespace {

class TaskArithmeticCombiner final : public TensorCombiner {
 public:
  explicit TaskArithmeticCombiner(std::span<const double> weights) : weights_(weights.begin(), weights.end()) {}

  const float* combine(uint64_t, size_t n, std::span<const float* const> deltas, float* scratch) override {
    if (deltas.size() == 1 && weights_[0] == 1.0f) return deltas[0];
    // f32 sum, starting from the first term so that a single -0 stays -0.
    for (size_t j = 0; j < n; ++j) scratch[j] = weights_[0] * deltas[0][j];
    for (size_t i = 1; i < deltas.size(); ++i) {
      for (size_t j = 0; j < n; ++j) scratch[j] += weights_[i] * deltas[i][j];
    }
    return scratch;
  }

 private:
  std::vector<float> weights_;
};

class TaskArithmetic final : public MergeMethod {
 public:
  std::string_view name() const override { return "task_arithmetic"; }
  const std::vector<MethodParam>& params() const override {
    static const std::vector<MethodParam> none;
    return none;
  }
  std::string formula() const override { return "sum_i w_i * v_i"; }
  std::unique_ptr<TensorCombiner> begin_tensor(const TensorContext& context) const override {
    return std::make_unique<TaskArithmeticCombiner>(context.vector_weights);
  }
};

}  // namespace

const MergeMethod& task_arithmetic_method() {
  static const TaskArithmetic method;
  return method;
}

}  // namespace rvec
