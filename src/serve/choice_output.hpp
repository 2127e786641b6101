// What one choice of a completion shows, event by event: its text (for
// completions with `echo`, the prompt's text first) and, when asked for, its
// log-probabilities in OpenAI's shapes:
//
//   chat:         "logprobs": {"content": [{"token", "logprob", "bytes",
//                               "top_logprobs": [{"token", "logprob", "bytes"}]}]}
//   completions:  "logprobs": {"tokens": [...], "token_logprobs": [...],
//                              "top_logprobs": [{token: logprob}], "text_offset": [...]}
//
// A token's string is its bytes made valid UTF-8 (a token that ends inside a
// character shows U+FFFD; chat's `bytes` has the raw bytes). Stop tokens are
// not listed. In completions, the first prompt token has null
// token_logprobs and top_logprobs (nothing precedes it); each top_logprobs
// holds the N most likely tokens and the chosen one; text_offset counts
// Unicode code points of the choice's text before each token, as vLLM does.
//
// One ChoiceOutput per choice, used by one thread.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/batcher.hpp"
#include "serve/request.hpp"

namespace rvec {

// What one event adds to a choice.
struct ChoicePart {
  std::string text;
  nlohmann::json logprobs;  // null when not asked for or nothing to add
};

class ChoiceOutput {
 public:
  // `parsed` and `model` must outlive this object.
  ChoiceOutput(const ParsedRequest& parsed, size_t choice, const ServedModel& model);

  // The text and log-probabilities `event` adds (with the echo before the first).
  ChoicePart add(const GenerationEvent& event);

 private:
  void add_completion_token(TokenId token, const PositionLogprobs* scored, nlohmann::json& into);
  nlohmann::json entry(const TokenLogprob& scored) const;
  std::string token_text(TokenId token) const;

  const ParsedRequest& parsed_;
  const GenerationRequest& request_;
  const ServedModel& model_;
  bool started_ = false;
  size_t offset_ = 0;  // code points before the next token (completions' text_offset)
};

// The logprobs object of a choice with no tokens yet.
nlohmann::json empty_logprobs(bool chat);

// Appends each array of `part` (a ChoicePart's logprobs) to the same array of
// `whole`: the log-probabilities of a whole choice from its parts.
void append_logprobs(nlohmann::json& whole, const nlohmann::json& part);

}  // namespace rvec
