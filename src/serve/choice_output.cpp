#include "serve/choice_output.hpp"

#include "serve/http_error.hpp"
#include "text/unicode.hpp"

namespace rvec {

using nlohmann::json;

json empty_logprobs(bool chat) {
  if (chat) return {{"content", json::array()}};
  return {{"tokens", json::array()}, {"token_logprobs", json::array()}, {"top_logprobs", json::array()},
          {"text_offset", json::array()}};
}

void append_logprobs(json& whole, const json& part) {
  for (const auto& [key, values] : part.items()) {
    for (const auto& value : values) whole[key].push_back(value);
  }
}

ChoiceOutput::ChoiceOutput(const ParsedRequest& parsed, size_t choice, const ServedModel& model)
    : parsed_(parsed), request_(parsed.choices.at(choice)), model_(model) {}

std::string ChoiceOutput::token_text(TokenId token) const { return valid_utf8(model_.token_bytes(token)); }

// Chat's shape of one scored token.
json ChoiceOutput::entry(const TokenLogprob& scored) const {
  const std::string bytes = model_.token_bytes(scored.token);
  json byte_values = json::array();
  for (const char c : bytes) byte_values.push_back(static_cast<unsigned char>(c));
  return {{"token", valid_utf8(bytes)}, {"logprob", scored.logprob}, {"bytes", byte_values}};
}

// Completions' shape: `scored` is null for the prompt's first token.
void ChoiceOutput::add_completion_token(TokenId token, const PositionLogprobs* scored, json& into) {
  const std::string bytes = model_.token_bytes(token);
  const std::string text = valid_utf8(bytes);
  into["tokens"].push_back(text);
  into["text_offset"].push_back(offset_);
  offset_ += utf8_character_starts(bytes);
  if (scored == nullptr) {
    into["token_logprobs"].push_back(nullptr);
    into["top_logprobs"].push_back(nullptr);
    return;
  }
  into["token_logprobs"].push_back(scored->chosen.logprob);
  json top = json::object();
  for (const auto& alternative : scored->top) top.emplace(token_text(alternative.token), alternative.logprob);
  top.emplace(text, scored->chosen.logprob);  // kept when another token shows as the same text
  into["top_logprobs"].push_back(std::move(top));
}

ChoicePart ChoiceOutput::add(const GenerationEvent& event) {
  ChoicePart part;
  json logprobs = empty_logprobs(parsed_.chat);
  if (!started_ && parsed_.echo) {
    std::string prompt_bytes;
    for (const TokenId token : request_.prompt) prompt_bytes += model_.token_bytes(token);
    part.text = valid_utf8(prompt_bytes);
    for (size_t i = 0; parsed_.logprobs && i < request_.prompt.size(); ++i) {
      const bool scored = i > 0 && i <= event.prompt_logprobs.size();
      add_completion_token(request_.prompt[i], scored ? &event.prompt_logprobs[i - 1] : nullptr, logprobs);
    }
  }
  started_ = true;
  part.text += event.text;
  if (event.logprobs && parsed_.chat) {
    json scored = entry(event.logprobs->chosen);
    scored["top_logprobs"] = json::array();
    for (const auto& alternative : event.logprobs->top) scored["top_logprobs"].push_back(entry(alternative));
    logprobs["content"].push_back(std::move(scored));
  } else if (event.logprobs) {
    add_completion_token(event.token, &*event.logprobs, logprobs);
  }
  const bool any = !logprobs[parsed_.chat ? "content" : "tokens"].empty();
  if (parsed_.logprobs && any) part.logprobs = std::move(logprobs);
  return part;
}

}  // namespace rvec
