// dare_linear (arXiv 2311.03099): drop each element of each vector with
// probability 1 - density (a seeded, order-free decision: dare_mask.hpp),
// rescale the survivors by 1/density (or to the vector's l1 norm), then sum
// as task arithmetic does.
#include "merge/methods/registry.hpp"
#include "merge/methods/trim_and_sum.hpp"

namespace rvec {

const MergeMethod& dare_linear_method() {
  static const TrimAndSumMethod method({"dare_linear", TrimKind::kRandom, false, "sum_i w_i * dare_density(v_i)",
                                        {density_param(0.1), seed_param(), rescale_param({"density", "l1", "none"}),
                                         normalize_param(false)}});
  return method;
}

}  // namespace rvec
