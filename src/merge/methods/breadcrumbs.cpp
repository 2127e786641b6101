// breadcrumbs (Model Breadcrumbs, arXiv 2312.06795): per tensor, each vector
// drops its largest floor(gamma * n) entries by |v| (outliers) and keeps the
// next floor(density * n), dropping the smallest rest; fewer outliers are
// dropped when gamma + density exceeds 1. Then summed as task arithmetic.
#include "merge/methods/registry.hpp"
#include "merge/methods/trim_and_sum.hpp"

namespace rvec {

const MergeMethod& breadcrumbs_method() {
  static const TrimAndSumMethod method({"breadcrumbs", TrimKind::kBand, false, "sum_i w_i * band_gamma_density(v_i)",
                                        {density_param(0.9), gamma_param(), rescale_param({"none", "l1"}),
                                         normalize_param(false)}});
  return method;
}

}  // namespace rvec
