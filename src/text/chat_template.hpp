// Chat templates. Hugging Face stores them as Jinja in tokenizer_config.json;
// rvec recognises the ChatML family (Qwen, many fine-tunes) and renders it
// natively rather than guessing at arbitrary Jinja:
//
//   <|im_start|>system\n{content}<|im_end|>\n      (the template's default
//   <|im_start|>user\n{content}<|im_end|>\n         system prompt is used when
//   <|im_start|>assistant\n                         the messages have none)
//
// Anything else is refused with a clear error.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

namespace rvec {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

class ChatTemplate {
 public:
  // From `folder`/tokenizer_config.json ("chat_template"), or from a
  // chat_template.jinja file beside it.
  static ChatTemplate from_folder(const std::string& folder);
  // From the Jinja source; `origin` names it in errors.
  static ChatTemplate from_jinja(const std::string& jinja, const std::string& origin);
  static ChatTemplate chatml(std::optional<std::string> default_system = std::nullopt);

  // The prompt text, ending with the assistant's header when `add_generation_prompt`.
  std::string render(std::span<const ChatMessage> messages, bool add_generation_prompt = true) const;
  // Text that ends an assistant turn.
  const std::string& end_of_turn() const { return end_of_turn_; }
  const std::optional<std::string>& default_system() const { return default_system_; }

 private:
  std::optional<std::string> default_system_;
  std::string end_of_turn_ = "<|im_end|>";
};

}  // namespace rvec
