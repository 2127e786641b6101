// Continuous batching: many generations advance together, one forward pass
// per step. Each step runs the prompts of newly admitted requests and the
// last token of every running one through the model at once, then samples
// one token per sequence. Finished sequences leave and waiting ones join
// between steps, so a long answer never holds up a short one.
//
// A Batcher is driven by one thread (the CLI loop or the server's engine
// thread); add() and cancel() must come from that same thread.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/logprobs.hpp"
#include "engine/sampler.hpp"
#include "engine/transformer.hpp"
#include "text/tokenizer.hpp"

namespace rvec {

struct GenerationRequest {
  std::vector<TokenId> prompt;
  SamplingParams sampling;
  // 0: only the prompt runs, to score it (prompt_logprobs must be set); its
  // one event has no token and finishes with kLength.
  size_t max_tokens = 256;
  std::vector<TokenId> stop_tokens;       // end the answer; not part of the text
  std::vector<std::string> stop_strings;  // end the answer; cut from the text
  // Log-probabilities (logprobs.hpp) of each answer token, of each prompt
  // token after the first, and how many alternatives to list at each.
  bool logprobs = false;
  bool prompt_logprobs = false;
  size_t top_logprobs = 0;
};

// kError: the sequence ended without a token because the model failed on it
// (non-finite logits); the event's `error` says why. Other sequences go on.
enum class FinishReason { kNone, kStop, kLength, kError };
const char* finish_reason_name(FinishReason reason);  // "stop", "length", "error"

struct GenerationEvent {
  uint64_t id = 0;
  TokenId token = -1;  // -1: no token (max_tokens 0, or kError)
  std::string text;  // text that became final with this token (may be empty)
  FinishReason finish = FinishReason::kNone;
  std::string error;  // with kError: one line naming the model folder
  // With request.logprobs, for a token that is part of the answer (not a stop token).
  std::optional<PositionLogprobs> logprobs;
  // With request.prompt_logprobs, in the sequence's first event: prompt[1], prompt[2], ...
  std::vector<PositionLogprobs> prompt_logprobs;
};

class Batcher {
 public:
  // `tokenizer` may be null (then events carry no text and stop strings never match).
  Batcher(Transformer& model, std::shared_ptr<const Tokenizer> tokenizer, size_t max_batch, size_t max_context);
  ~Batcher();

  // Queues a request; throws a usage error if it cannot fit the context.
  uint64_t add(GenerationRequest request);
  void cancel(uint64_t id);
  bool idle() const { return running_.empty() && waiting_.empty(); }
  size_t running() const { return running_.size(); }
  size_t max_context() const { return max_context_; }

  // One forward pass and one new token per running sequence.
  std::vector<GenerationEvent> step();

 private:
  struct Sequence;
  void admit();
  void finish_text(Sequence& seq, std::string piece, GenerationEvent& event);
  void score_prompt(Sequence& seq, size_t token, std::span<const float> logits);
  GenerationEvent next_token(Sequence& seq, std::span<const float> logits);
  std::string broken_model(const NonFiniteLogits& e, size_t position) const;

  Transformer& model_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  size_t max_batch_, max_context_;
  uint64_t next_id_ = 1;
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;
  std::vector<float> logits_;
};

}  // namespace rvec
