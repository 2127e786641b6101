// Log-probabilities of tokens under the model's raw distribution: the
// log-softmax of the logits, before temperature, top_k or top_p change them
// (as vLLM reports them by default). They score an answer or a prompt
// (`logprobs` and `echo` in the OpenAI API); sampling never reads them.
//
// Plain functions of their arguments; thread-safe.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "text/tokenizer.hpp"

namespace rvec {

struct TokenLogprob {
  TokenId token = -1;
  float logprob = 0.0f;  // natural log; <= 0
};

// One position: the token that is there, and the most likely tokens.
struct PositionLogprobs {
  TokenLogprob chosen;
  std::vector<TokenLogprob> top;  // most likely first; equal logits: lower id first
};

// The log-softmax of `logits` at `token`, and at the `top` most likely
// tokens. The sum of exponentials is accumulated in double, so the values
// are within a few float roundings of an exact log-softmax. Throws
// NonFiniteLogits (sampler.hpp) if any logit is NaN or infinite.
PositionLogprobs position_logprobs(std::span<const float> logits, TokenId token, size_t top);

}  // namespace rvec
