#include "engine/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "base/error.hpp"

namespace rvec {
// A NaN's sign bit depends on which instruction made it (x86's default NaN is
// negative), so it is printed as plain "nan".
NonFiniteLogits::NonFiniteLogits(TokenId token, float value)
    : Error(ErrorKind::kBadInput, fmt::format("the model produced non-finite logits ({} for token {})",
                                              std::isnan(value) ? "nan" : fmt::format("{}", value), token)),
      token_(token) {}

void require_finite(std::span<const float> logits) {
  const auto bad = std::find_if(logits.begin(), logits.end(), [](float v) { return !std::isfinite(v); });
  if (bad != logits.end()) throw NonFiniteLogits(static_cast<TokenId>(bad - logits.begin()), *bad);
}

void validate(const SamplingParams& p) {
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature)) {
    fail(ErrorKind::kUsage, "temperature must be a finite number >= 0 (got {})", p.temperature);
  }
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) fail(ErrorKind::kUsage, "top_p must be in (0, 1] (got {})", p.top_p);
}

TokenId argmax(std::span<const float> logits) {
  return static_cast<TokenId>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

TokenId Sampler::sample(std::span<const float> logits) {
  require_finite(logits);
  if (params_.temperature == 0.0f) return argmax(logits);
  // Candidates: tokens within 30 nats of the best (a relative probability of
  // 1e-13 or more); the rest cannot carry a visible share of the mass, and
  // sorting 150k entries per token would cost more than the model step.
  const float best = *std::max_element(logits.begin(), logits.end());
  const float cutoff = best - 30.0f * params_.temperature;
  struct Candidate {
    float logit;
    TokenId id;
  };
  std::vector<Candidate> candidates;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (logits[i] >= cutoff) candidates.push_back({logits[i], static_cast<TokenId>(i)});
  }
  const auto by_logit = [](const Candidate& a, const Candidate& b) {
    return a.logit != b.logit ? a.logit > b.logit : a.id < b.id;
  };
  std::sort(candidates.begin(), candidates.end(), by_logit);
  if (params_.top_k > 0 && candidates.size() > params_.top_k) candidates.resize(params_.top_k);
  std::vector<double> probs(candidates.size());
  double total = 0;
  for (size_t i = 0; i < candidates.size(); ++i) {
    total += probs[i] = std::exp(static_cast<double>(candidates[i].logit - best) / params_.temperature);
  }
  size_t keep = candidates.size();
  if (params_.top_p < 1.0f) {
    double mass = 0;
    for (keep = 0; keep < candidates.size();) {
      mass += probs[keep++] / total;
      if (mass >= params_.top_p) break;
    }
  }
  double kept_mass = 0;
  for (size_t i = 0; i < keep; ++i) kept_mass += probs[i];
  // A uniform draw in [0, kept_mass) from 53 random bits.
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * kept_mass;
  double running = 0;
  for (size_t i = 0; i < keep; ++i) {
    running += probs[i];
    if (u < running) return candidates[i].id;
  }
  return candidates[keep - 1].id;
}

}  // namespace rvec
