// A ServedModel with no model behind it, for parsing tests and the HTTP
// fuzzer: every byte of text is one token id (vocabulary 256), and chat
// messages render as "role: content\n".
#pragma once

#include <string>
#include <vector>

#include "serve/request.hpp"

namespace rvec::test {

inline ServedModel byte_model(size_t max_context = 512) {
  ServedModel model;
  model.name = "tiny";
  model.path = "/models/tiny";
  model.max_context = max_context;
  model.vocab = 256;
  model.encode = [](const std::string& text) {
    return std::vector<TokenId>(reinterpret_cast<const unsigned char*>(text.data()),
                                reinterpret_cast<const unsigned char*>(text.data()) + text.size());
  };
  model.render_chat = [](const std::vector<ChatMessage>& messages) {
    std::string text;
    for (const auto& m : messages) text += m.role + ": " + m.content + "\n";
    return text;
  };
  model.stop_tokens = {0};
  model.token_bytes = [](TokenId id) { return std::string(1, static_cast<char>(id)); };
  return model;
}

}  // namespace rvec::test
