// ties (arXiv 2306.01708): trim each vector to its top-k by |v|, elect a sign
// per element from the sum of the trimmed vectors, and average (weighted by
// w_i) only the entries that agree with it: the disjoint mean. `vote:
// weighted` elects from the sum of w_i-weighted entries instead, as mergekit
// does (mergekit issue 474: a small weight can then flip the vote).
#include "merge/methods/registry.hpp"
#include "merge/methods/trim_and_sum.hpp"

namespace rvec {

const MergeMethod& ties_method() {
  static const TrimAndSumMethod method(
      {"ties", TrimKind::kTopK, true, "disjoint_mean_i(w_i * topk_density(v_i) agreeing with the elected sign)",
       {density_param(0.2), vote_param(), normalize_param(true), rescale_param({"none", "l1"})}});
  return method;
}

}  // namespace rvec
