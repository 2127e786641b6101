// Choosing the next token from logits.
//
// temperature 0 is greedy (argmax, lowest id on ties). Otherwise logits are
// divided by the temperature, cut to the top_k largest (0 = all), turned into
// probabilities, cut to the smallest set whose mass reaches top_p, and drawn
// from with a per-sequence mt19937_64 seeded by `seed`: the same seed, prompt
// and model give the same tokens, whatever else is in the batch.
//
// Logits must be finite: a NaN or an infinity means the model is broken (NaN
// or Inf weights, an overflow), and sampling throws NonFiniteLogits instead of
// choosing some token.
#pragma once

#include <cstdint>
#include <random>
#include <span>

#include "base/error.hpp"
#include "text/tokenizer.hpp"

namespace rvec {

struct SamplingParams {
  float temperature = 0.0f;
  float top_p = 1.0f;
  uint32_t top_k = 0;
  uint64_t seed = 0;
};

// The model's output for one sequence holds a NaN or an infinity (a bad-input
// error: the model is what is broken, not the request).
class NonFiniteLogits : public Error {
 public:
  NonFiniteLogits(TokenId token, float value);
  TokenId token() const { return token_; }

 private:
  TokenId token_;
};

// Throws NonFiniteLogits for the first NaN or infinite logit.
void require_finite(std::span<const float> logits);

// Throws a usage error naming the bad field (negative temperature, top_p outside (0, 1], ...).
void validate(const SamplingParams& params);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}
  // Throws NonFiniteLogits if any logit is NaN or infinite.
  TokenId sample(std::span<const float> logits);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
};

TokenId argmax(std::span<const float> logits);

}  // namespace rvec
