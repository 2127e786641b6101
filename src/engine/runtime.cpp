#include "engine/runtime.hpp"

#include <algorithm>

#include "base/error.hpp"
#include "engine/model_source.hpp"

namespace rvec {

ModelRuntime ModelRuntime::load(const std::string& folder, size_t threads) {
  ModelRuntime r;
  r.folder = folder;
  r.pool = std::make_unique<ThreadPool>(threads);
  const auto source = ModelSource::open(folder);
  r.model = Transformer::load(*source, *r.pool);
  r.tokenizer = source->tokenizer(r.tokenizer_error);
  try {
    r.chat = source->chat_template();
  } catch (const Error& e) {
    r.chat_error = e.what();
  }
  r.stop_tokens = r.model->config().eos_ids;
  if (r.tokenizer) {
    for (const char* text : {"<|im_end|>", "<|endoftext|>"}) {
      const auto id = r.tokenizer->find(text);
      if (id && std::find(r.stop_tokens.begin(), r.stop_tokens.end(), *id) == r.stop_tokens.end()) {
        r.stop_tokens.push_back(*id);
      }
    }
  }
  return r;
}

const Tokenizer& ModelRuntime::require_tokenizer() const {
  if (!tokenizer) throw Error(ErrorKind::kBadInput, tokenizer_error);
  return *tokenizer;
}

const ChatTemplate& ModelRuntime::require_chat() const {
  if (!chat) throw Error(ErrorKind::kBadInput, chat_error);
  return *chat;
}

}  // namespace rvec
