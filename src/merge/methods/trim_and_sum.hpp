// Trim, elect, sum: the combiner that magnitude, ties, dare_linear, dare_ties
// and breadcrumbs share (mergekit calls the family "generalized task
// arithmetic"). Per tensor, for every vector i with weight w_i (f32):
//
//   1. trim:      t_i = keep_i(j) ? f32(d_i * r_i) : 0
//                 keep_i: the top-k by |d| (magnitude), a band of ranks
//                 (breadcrumbs), or a seeded coin (DARE, see dare_mask.hpp);
//                 r_i: 1, f32(1 / density), or f32(l1(d_i) / l1(t_i)) (rescale)
//   2. weight:    u_i = f32(w_i * t_i)
//   3. elect:     (TIES only) s = x_0 + x_1 + ... in f32, x_i = t_i (vote:
//                 unweighted, the paper) or u_i (vote: weighted, mergekit);
//                 vector i agrees when x_i > 0 for s >= 0, x_i < 0 for s < 0
//   4. sum:       without election  m = u_0 + u_1 + ...,  q = w_0 + w_1 + ...
//                 with election     m = 0 + Σ agreeing u_i, q = 0 + Σ agreeing w_i
//                 (f32, in vector order)
//   5. normalize: δ = m / q (q = 1 where q is 0, or |q| < 1e-8 without
//                 election), else δ = m
//
// Ranks order elements by |d| descending (the f32 bit pattern of |d|, so NaN
// ranks above Inf), ties broken by lowest element index: exactly k elements
// are in the top k. k = floor(density * n) in double. The thresholds come
// from a radix select on the bit patterns (rank_select.hpp: usually found in
// the first statistics pass, else after two more); the l1 sums are taken in
// double in element order in one more pass.
//
// Memory per rank bound while its tensor's statistics passes run: at most
// about 5 MiB (rank_select.hpp), whatever the tensor size; none afterwards.
#pragma once

#include <string>
#include <vector>

#include "merge/method.hpp"

namespace rvec {

enum class TrimKind {
  kTopK,    // keep the density share with the largest |d|
  kBand,    // drop the gamma share with the largest |d|, keep the next density share
  kRandom,  // keep each element with probability density (DARE)
};

struct TrimAndSumConfig {
  std::string_view name;
  TrimKind trim;
  bool elect_sign;
  std::string formula;
  std::vector<MethodParam> params;  // density (and gamma, seed, vote, normalize, rescale as the method takes them)
};

// A MergeMethod defined by its config; each method file declares one.
class TrimAndSumMethod final : public MergeMethod {
 public:
  explicit TrimAndSumMethod(TrimAndSumConfig config) : config_(std::move(config)) {}

  std::string_view name() const override { return config_.name; }
  const std::vector<MethodParam>& params() const override { return config_.params; }
  std::string formula() const override { return config_.formula; }
  unsigned statistics_passes(const TensorContext& context) const override;
  std::unique_ptr<TensorCombiner> begin_tensor(const TensorContext& context) const override;

 private:
  TrimAndSumConfig config_;
};

// out[j] = w_0 x_0[j] + w_1 x_1[j] + ... (f32, in order), then divided by
// q = w_0 + w_1 + ... when `normalize` (q = 1 where |q| < 1e-8): step 4 and 5
// without election, and task arithmetic itself. Returns `out`, or x_0 itself
// when that is the sum (one input of weight 1, not normalized: 1 · x is x
// bit for bit, but for a signalling NaN, which x_0 then keeps unquieted).
const float* weighted_sum(std::span<const float> weights, std::span<const float* const> inputs, size_t n,
                          bool normalize, float* out);

// The parameters the methods share, with their defaults.
MethodParam density_param(double default_value);
MethodParam gamma_param();
MethodParam seed_param();
MethodParam vote_param();
MethodParam normalize_param(bool default_value);
// `choices` in order, the first the default: {"density", "l1", "none"} for DARE, {"none", "l1"} otherwise.
MethodParam rescale_param(std::vector<std::string> choices);

}  // namespace rvec
