#include "engine/logprobs.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/sampler.hpp"

namespace rvec {

PositionLogprobs position_logprobs(std::span<const float> logits, TokenId token, size_t top) {
  require_finite(logits);
  const float best = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (const float logit : logits) sum += std::exp(static_cast<double>(logit) - best);
  const double log_total = best + std::log(sum);
  const auto logprob = [&](TokenId id) {
    return TokenLogprob{id, static_cast<float>(logits[static_cast<size_t>(id)] - log_total)};
  };
  PositionLogprobs out{logprob(token), {}};
  const size_t count = std::min(top, logits.size());
  if (count == 0) return out;
  std::vector<TokenId> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(count), ids.end(), [&](TokenId a, TokenId b) {
    const float la = logits[static_cast<size_t>(a)], lb = logits[static_cast<size_t>(b)];
    return la != lb ? la > lb : a < b;
  });
  for (size_t i = 0; i < count; ++i) out.top.push_back(logprob(ids[i]));
  return out;
}

}  // namespace rvec
