// Reading and checking an OpenAI completion request, without the engine:
// the body text in, the token ids and sampling settings of each choice out,
// or an HttpError (400 naming the field, 404 for another model's name,
// 413 for a body over the size limit).
//
// Every field is type-checked and range-checked; null means "not given", as
// in OpenAI's API; a field rvec does not implement is refused by name.
// Stateless and thread-safe as long as `model`'s functions are.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/batcher.hpp"
#include "text/chat_template.hpp"

namespace rvec {

// What parsing needs from the served model. `encode` and `render_chat` may
// throw rvec::Error for input they cannot handle; the request is refused with
// that message.
struct ServedModel {
  std::string name;        // what clients send as "model"
  std::string path;        // also accepted as "model"
  size_t max_context = 0;  // tokens
  size_t vocab = 0;        // token ids are below this
  std::function<std::vector<TokenId>(const std::string& text)> encode;
  std::function<std::string(const std::vector<ChatMessage>& messages)> render_chat;
  std::vector<TokenId> stop_tokens;
  // The raw bytes one token stands for (for logprobs and echo); must not
  // throw. Empty when the model has no tokenizer: then both are refused.
  std::function<std::string(TokenId id)> token_bytes;
};

enum class Endpoint { kChat, kCompletion };  // /v1/chat/completions, /v1/completions

struct ParsedRequest {
  bool chat = false;
  bool stream = false;
  bool include_usage = false;
  // Log-probabilities in each choice (chat: `logprobs: true`; completions:
  // `logprobs: N`); each choice's GenerationRequest says of which tokens and
  // with how many alternatives.
  bool logprobs = false;
  bool echo = false;  // completions: each choice's text starts with its prompt
  size_t prompt_tokens = 0;
  // `n` choices per prompt (a completions request may have several prompts),
  // prompt by prompt; seeds seed, seed+1, ... in that order.
  std::vector<GenerationRequest> choices;
};

// Throws HttpError for anything wrong with `body`.
ParsedRequest parse_request(std::string_view body, Endpoint endpoint, const ServedModel& model);

}  // namespace rvec
