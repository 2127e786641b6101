// dare_ties: DARE's random drop and rescale (dare_linear.cpp), then TIES'
// sign election over the survivors (ties.cpp). Like mergekit, the agreeing
// entries are summed, not averaged, unless `normalize: true`.
#include "merge/methods/registry.hpp"
#include "merge/methods/trim_and_sum.hpp"

namespace rvec {

const MergeMethod& dare_ties_method() {
  static const TrimAndSumMethod method(
      {"dare_ties", TrimKind::kRandom, true, "sum_i(w_i * dare_density(v_i) agreeing with the elected sign)",
       {density_param(0.1), seed_param(), vote_param(), rescale_param({"density", "l1", "none"}),
        normalize_param(false)}});
  return method;
}

}  // namespace rvec
