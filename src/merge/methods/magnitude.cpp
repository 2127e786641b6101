// magnitude: task arithmetic over trimmed vectors. Each vector keeps exactly
// floor(density * n) elements of each tensor, those with the largest |v|
// (ties by lowest index); the rest become 0 (TIES' trim step, without the
// sign election).
#include "merge/methods/registry.hpp"
#include "merge/methods/trim_and_sum.hpp"

namespace rvec {

const MergeMethod& magnitude_method() {
  static const TrimAndSumMethod method({"magnitude", TrimKind::kTopK, false, "sum_i w_i * topk_density(v_i)",
                                        {density_param(0.2), rescale_param({"none", "l1"}), normalize_param(false)}});
  return method;
}

}  // namespace rvec
