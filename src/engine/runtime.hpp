// A model folder or GGUF file (engine/model_source.hpp) made ready to
// generate: weights in the engine, the tokenizer and chat template when the
// model has them, and the tokens that
// end an answer (eos ids from the configs, <|im_end|>, <|endoftext|>).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/thread_pool.hpp"
#include "engine/transformer.hpp"
#include "text/chat_template.hpp"
#include "text/tokenizer.hpp"

namespace rvec {

struct ModelRuntime {
  std::string folder;  // the folder or .gguf file
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<Transformer> model;
  std::shared_ptr<const Tokenizer> tokenizer;  // null without one
  std::string tokenizer_error;                 // why `tokenizer` is null
  std::optional<ChatTemplate> chat;           // null without a chat template
  std::string chat_error;                     // why `chat` is null
  std::vector<TokenId> stop_tokens;

  static ModelRuntime load(const std::string& folder, size_t threads);

  const Tokenizer& require_tokenizer() const;   // error saying why if absent
  const ChatTemplate& require_chat() const;     // error saying why if absent
};

}  // namespace rvec
