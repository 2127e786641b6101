#include "engine/runtime.hpp"

#include <algorithm>
#include <filesystem>

#include "base/error.hpp"

namespace rvec {

ModelRuntime ModelRuntime::load(const std::string& folder, size_t threads) {
  namespace fs = std::filesystem;
  ModelRuntime r;
  r.folder = folder;
  r.pool = std::make_unique<ThreadPool>(threads);
  r.model = Transformer::load(folder, *r.pool);
  if (fs::exists(fs::path(folder) / "tokenizer.json")) r.tokenizer = Tokenizer::load(folder);
  try {
    r.chat = ChatTemplate::from_folder(folder);
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
  if (!tokenizer) bad_input("{}: no tokenizer.json, so text cannot be encoded (give token ids instead)", folder);
  return *tokenizer;
}

const ChatTemplate& ModelRuntime::require_chat() const {
  if (!chat) throw Error(ErrorKind::kBadInput, chat_error);
  return *chat;
}

}  // namespace rvec
