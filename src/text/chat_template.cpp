#include "text/chat_template.hpp"

#include <filesystem>

#include "base/error.hpp"
#include "base/json.hpp"
#include "base/regex.hpp"

namespace rvec {
namespace {

// Undoes the escapes a Jinja string literal may hold in a default system prompt.
std::string unescape_jinja_literal(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size()) {
      const char next = text[++i];
      out += next == 'n' ? '\n' : next == 't' ? '\t' : next;
    } else {
      out += text[i];
    }
  }
  return out;
}

std::string jinja_from_config(const nlohmann::json& config, const std::string& origin) {
  const auto& node = config.at("chat_template");
  if (node.is_string()) return node.get<std::string>();
  if (node.is_array()) {  // [{"name": "default", "template": "..."}, ...]
    for (const auto& entry : node) {
      if (entry.is_object() && entry.contains("name") && entry["name"] == "default" && entry.contains("template") &&
          entry["template"].is_string()) {
        return entry["template"].get<std::string>();
      }
    }
  }
  bad_input("{}: chat_template is neither a string nor a list with a \"default\" template", origin);
}

}  // namespace

ChatTemplate ChatTemplate::chatml(std::optional<std::string> default_system) {
  ChatTemplate result;
  result.default_system_ = std::move(default_system);
  return result;
}

ChatTemplate ChatTemplate::from_jinja(const std::string& jinja, const std::string& origin) {
  const bool chatml_turns = jinja.find("<|im_start|>") != std::string::npos &&
                            jinja.find("<|im_end|>") != std::string::npos &&
                            jinja.find("role") != std::string::npos;
  if (!chatml_turns) {
    bad_input("{}: the chat template is not ChatML (<|im_start|>role ... <|im_end|>); rvec supports only ChatML "
              "templates, so give the prompt as plain text or ids instead of --chat",
              origin);
  }
  // Qwen2.5 writes a default system turn when the messages have none.
  static const Regex kDefaultSystem(R"('<\|im_start\|>system\\n([^'{}]*?)<\|im_end\|>)", "default system regex");
  const auto found = kDefaultSystem.find_group(jinja, 0, 1);
  if (found && found->end > found->begin) {
    return chatml(unescape_jinja_literal(std::string_view(jinja).substr(found->begin, found->end - found->begin)));
  }
  return chatml();
}

ChatTemplate ChatTemplate::from_folder(const std::string& folder) {
  namespace fs = std::filesystem;
  const auto jinja_file = fs::path(folder) / "chat_template.jinja";
  if (fs::exists(jinja_file)) return from_jinja(read_small_file(jinja_file.string(), 1 << 20), jinja_file.string());
  const auto config_file = (fs::path(folder) / "tokenizer_config.json").string();
  if (!fs::exists(config_file)) bad_input("{}: no tokenizer_config.json, so no chat template", folder);
  const auto config = read_json_file(config_file);
  if (!config.is_object() || !config.contains("chat_template")) {
    bad_input("{}: no chat_template field", config_file);
  }
  return from_jinja(jinja_from_config(config, config_file), config_file);
}

std::string ChatTemplate::render(std::span<const ChatMessage> messages, bool add_generation_prompt) const {
  std::string out;
  const auto turn = [&](const std::string& role, const std::string& content) {
    out += "<|im_start|>" + role + "\n" + content + end_of_turn_ + "\n";
  };
  if (default_system_ && (messages.empty() || messages.front().role != "system")) turn("system", *default_system_);
  for (const auto& message : messages) {
    if (message.role != "system" && message.role != "user" && message.role != "assistant") {
      bad_input("chat message role \"{}\" is not system, user or assistant", message.role);
    }
    turn(message.role, message.content);
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

}  // namespace rvec
