#include "serve/request.hpp"

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>

#include "base/error.hpp"
#include "base/json.hpp"
#include "serve/http_error.hpp"
#include "serve/limits.hpp"

namespace rvec {
namespace {

using nlohmann::json;
namespace limits = serve_limits;

// ---- the body as JSON -------------------------------------------------------------

// nlohmann's parse error without its prefix and without the bytes it quotes:
// "[json.exception.parse_error.101] parse error at line 1, column 9: syntax
// error while parsing value - invalid literal; last read: 'x'; expected ..."
// becomes "invalid literal; expected ...".
std::string parse_error_reason(const std::string& what) {
  std::string reason = json_error_reason(what);
  if (const auto dash = reason.find(" - "); dash != std::string::npos) reason.erase(0, dash + 3);
  const auto last_read = reason.find("; last read: ");
  if (last_read != std::string::npos) {
    const auto expected = reason.find("; expected", last_read);
    reason = reason.substr(0, last_read) + (expected == std::string::npos ? "" : reason.substr(expected));
  }
  return valid_utf8(reason);
}

// Builds the DOM like nlohmann's own parser, but stops at kMaxJsonDepth
// levels and remembers which field a syntax error is in.
class BodySax {
 public:
  explicit BodySax(json& root) : dom_(root, false) {}

  bool null() { return value() && dom_.null(); }
  bool boolean(bool v) { return value() && dom_.boolean(v); }
  bool number_integer(json::number_integer_t v) { return value() && dom_.number_integer(v); }
  bool number_unsigned(json::number_unsigned_t v) { return value() && dom_.number_unsigned(v); }
  bool number_float(json::number_float_t v, const json::string_t& s) { return value() && dom_.number_float(v, s); }
  bool string(json::string_t& v) { return value() && dom_.string(v); }
  bool binary(json::binary_t& v) { return value() && dom_.binary(v); }
  bool start_object(std::size_t n) { return value() && open(false) && dom_.start_object(n); }
  bool start_array(std::size_t n) { return value() && open(true) && dom_.start_array(n); }
  bool key(json::string_t& k) {
    frames_.back().key = k;
    return dom_.key(k);
  }
  bool end_object() {
    frames_.pop_back();
    return dom_.end_object();
  }
  bool end_array() {
    frames_.pop_back();
    return dom_.end_array();
  }
  template <typename Exception>
  bool parse_error(std::size_t byte, const std::string&, const Exception& error) {
    where_ = path();
    error_ = fmt::format("the request body is not valid JSON (at byte {}{}): {}", byte,
                         where_.empty() ? "" : ", in " + where_, parse_error_reason(error.what()));
    return false;
  }

  // Why parsing stopped, or "" if it did not, and in which field.
  const std::string& error() const { return error_; }
  const std::string& where() const { return where_; }

 private:
  struct Frame {
    bool array = false;
    size_t values = 0;  // values started in this array
    std::string key;    // the key of the value being read in this object
  };

  bool value() {
    if (!frames_.empty()) ++frames_.back().values;
    return true;
  }
  bool open(bool array) {
    if (frames_.size() >= limits::kMaxJsonDepth) {
      where_ = valid_utf8(frames_.front().key);  // the top-level field
      error_ = fmt::format("the request body nests JSON deeper than {} levels{}", limits::kMaxJsonDepth,
                           where_.empty() ? "" : " (in " + where_ + ")");
      return false;
    }
    frames_.push_back({array, 0, ""});
    return true;
  }
  // Where the parser is, as "messages[0].content". In the innermost array the
  // value being read has not been counted yet.
  std::string path() const {
    std::string out;
    for (size_t i = 0; i < frames_.size(); ++i) {
      const Frame& frame = frames_[i];
      const bool innermost = i + 1 == frames_.size();
      if (frame.array) {
        const size_t index = innermost ? frame.values : frame.values - 1;
        out += fmt::format("[{}]", index);
      } else if (!frame.key.empty()) {
        out += (out.empty() ? "" : ".") + valid_utf8(frame.key);
      }
    }
    return out;
  }

  nlohmann::detail::json_sax_dom_parser<json> dom_;
  std::vector<Frame> frames_;
  std::string error_, where_;
};

json parse_body(std::string_view body) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    refuse("the request body is empty; it must be a JSON object");
  }
  json root;
  BodySax sax(root);
  if (!json::sax_parse(body, &sax)) {
    refuse(sax.error().empty() ? "the request body is not valid JSON" : sax.error(), sax.where());
  }
  if (!root.is_object()) refuse("the request body must be a JSON object");
  return root;
}

// A JSON value as it appears in a message, shortened.
std::string shown(const json& value) {
  constexpr size_t kMax = 60;
  const std::string text = json_text(value);
  return text.size() <= kMax ? text : valid_utf8(std::string_view(text).substr(0, kMax)) + "...";
}

// ---- fields -----------------------------------------------------------------------

// The fields of one JSON object. Remembers which were read, so that fields
// rvec does not implement can be refused by name.
class Fields {
 public:
  Fields(const json& object, std::string prefix) : object_(object), prefix_(std::move(prefix)) {}

  std::string path(std::string_view name) const { return prefix_ + std::string(name); }

  // The field's value; nullptr when absent or null.
  const json* get(std::string_view name) {
    read_.emplace(name);
    const auto it = object_.find(name);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }

  [[noreturn]] void refuse_value(std::string_view name, std::string_view should_be, const json& got) const {
    refuse(fmt::format("{} must be {} (got {})", path(name), should_be, shown(got)), path(name));
  }

  std::optional<bool> boolean(std::string_view name) {
    const json* value = get(name);
    if (!value) return std::nullopt;
    if (!value->is_boolean()) refuse_value(name, "true or false", *value);
    return value->get<bool>();
  }

  const std::string* string(std::string_view name) {
    const json* value = get(name);
    if (!value) return nullptr;
    if (!value->is_string()) refuse_value(name, "a string", *value);
    return value->get_ptr<const std::string*>();
  }

  double number(std::string_view name, double fallback, double low, double high) {
    const json* value = get(name);
    if (!value) return fallback;
    const std::string range = fmt::format("a number from {} to {}", low, high);
    if (!value->is_number()) refuse_value(name, range, *value);
    const double number = value->get<double>();
    if (!(number >= low && number <= high)) refuse_value(name, range, *value);
    return number;
  }

  std::optional<int64_t> integer(std::string_view name, int64_t low, int64_t high) {
    const json* value = get(name);
    if (!value) return std::nullopt;
    const std::string range = fmt::format("an integer from {} to {}", low, high);
    if (!value->is_number_integer()) refuse_value(name, range, *value);
    if (value->is_number_unsigned() && value->get<uint64_t>() > static_cast<uint64_t>(high)) {
      refuse_value(name, range, *value);
    }
    const auto number = value->get<int64_t>();
    if (number < low || number > high) refuse_value(name, range, *value);
    return number;
  }

  // A field rvec does not implement, accepted only with the value that means "off".
  void neutral(std::string_view name, const json& off) {
    const json* value = get(name);
    if (value && *value != off) {
      refuse(fmt::format("{} is not supported by rvec serve (only {} is accepted)", path(name), json_text(off)), path(name));
    }
  }

  // Refuses every field no getter asked for.
  void refuse_unread() const {
    for (const auto& [key, value] : object_.items()) {
      if (read_.count(key) == 0) {
        refuse(fmt::format("{} is not supported by rvec serve", valid_utf8(path(key))), valid_utf8(path(key)));
      }
    }
  }

 private:
  const json& object_;
  std::string prefix_;
  std::set<std::string, std::less<>> read_;
};

// The value as an object's Fields, or a refusal naming it.
Fields object_fields(const json& value, const std::string& path) {
  if (!value.is_object()) refuse(fmt::format("{} must be an object (got {})", path, shown(value)), path);
  return Fields(value, path + ".");
}

// ---- the prompt -------------------------------------------------------------------

template <typename Function>
auto refuse_model_errors(const char* field, Function function) {
  try {
    return function();
  } catch (const Error& e) {
    refuse(valid_utf8(e.what()), field);
  }
}

std::string message_content(Fields& message, const std::string& path) {
  const json* content = message.get("content");
  if (content && content->is_string()) return content->get<std::string>();
  if (content && content->is_array()) {  // [{"type": "text", "text": "..."}]
    std::string text;
    for (size_t i = 0; i < content->size(); ++i) {
      const std::string part_path = fmt::format("{}.content[{}]", path, i);
      Fields part = object_fields((*content)[i], part_path);
      const std::string* type = part.string("type");
      if (!type || *type != "text") refuse(fmt::format("{}: only text parts are supported", part_path), part_path);
      const std::string* part_text = part.string("text");
      if (!part_text) refuse(fmt::format("{}.text must be a string", part_path), part_path + ".text");
      text += *part_text;
      part.refuse_unread();
    }
    return text;
  }
  refuse(fmt::format("{}.content must be a string or a list of text parts", path), path + ".content");
}

// A message that is part of a tool call; `role` is "tool" or "function" for
// a tool's result, "" for a call.
[[noreturn]] void refuse_tools(const std::string& field, const std::string& role) {
  refuse(fmt::format("{}{}: tools (function calling) are not supported by rvec serve", field,
                     role.empty() ? "" : fmt::format(" is \"{}\"", role)),
         field);
}

std::vector<ChatMessage> chat_messages(Fields& request) {
  const json* messages = request.get("messages");
  if (!messages || !messages->is_array() || messages->empty()) refuse("messages must be a non-empty list", "messages");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < messages->size(); ++i) {
    const std::string path = fmt::format("messages[{}]", i);
    Fields message = object_fields((*messages)[i], path);
    const std::string* role = message.string("role");
    if (role && (*role == "tool" || *role == "function")) refuse_tools(fmt::format("{}.role", path), *role);
    for (const char* call : {"tool_calls", "function_call"}) {
      if (message.get(call)) refuse_tools(fmt::format("{}.{}", path, call), "");
    }
    if (!role || (*role != "system" && *role != "developer" && *role != "user" && *role != "assistant")) {
      refuse(fmt::format("{}.role must be \"system\", \"developer\", \"user\" or \"assistant\"", path), path + ".role");
    }
    // OpenAI treats developer messages as system messages for models without reasoning.
    out.push_back({*role == "developer" ? "system" : *role, message_content(message, path)});
    message.refuse_unread();
  }
  return out;
}

std::vector<TokenId> token_ids(const json& prompt, const std::string& path, const ServedModel& model) {
  std::vector<TokenId> ids;
  ids.reserve(prompt.size());
  for (size_t i = 0; i < prompt.size(); ++i) {
    const json& id = prompt[i];
    const bool in_vocab = id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<uint64_t>() < model.vocab;
    if (!in_vocab) {
      refuse(fmt::format("{}[{}] must be a token id from 0 to {} (got {}, outside the vocabulary)", path, i,
                         model.vocab - 1, shown(id)),
             "prompt");
    }
    ids.push_back(static_cast<TokenId>(id.get<int64_t>()));
  }
  return ids;
}

// One prompt: a string or a non-empty list of token ids; `path` names it.
std::vector<TokenId> one_prompt(const json& prompt, const std::string& path, const ServedModel& model) {
  if (prompt.is_string()) {
    if (prompt.get_ref<const std::string&>().empty()) refuse(fmt::format("{} is empty", path), "prompt");
    return refuse_model_errors("prompt", [&] { return model.encode(prompt.get<std::string>()); });
  }
  if (prompt.is_array() && !prompt.empty()) return token_ids(prompt, path, model);
  refuse(fmt::format("{} must be a string or a non-empty list of token ids", path), "prompt");
}

// `prompt` is the field's value, nullptr if absent or null: one prompt, or a
// list of prompts (strings or lists of token ids), each answered in order.
std::vector<std::vector<TokenId>> completion_prompts(const json* prompt, const ServedModel& model) {
  const std::string should_be = "a string, a list of token ids, or a non-empty list of strings or of lists of token ids";
  if (!prompt || !(prompt->is_string() || (prompt->is_array() && !prompt->empty()))) {
    refuse("prompt must be " + should_be, "prompt");
  }
  const bool single = prompt->is_string() || (*prompt)[0].is_number();
  if (single) return {one_prompt(*prompt, "prompt", model)};
  if (prompt->size() > limits::kMaxChoices) {
    refuse(fmt::format("prompt has {} prompts; at most {} are accepted in one request", prompt->size(), limits::kMaxChoices),
           "prompt");
  }
  std::vector<std::vector<TokenId>> prompts;
  for (size_t i = 0; i < prompt->size(); ++i) prompts.push_back(one_prompt((*prompt)[i], fmt::format("prompt[{}]", i), model));
  return prompts;
}

// ---- settings ---------------------------------------------------------------------

void check_model(Fields& request, const ServedModel& model) {
  const std::string* name = request.string("model");
  if (name && *name != model.name && *name != model.path) {
    refuse(fmt::format("the model `{}` does not exist (this server serves `{}`)", valid_utf8(*name), model.name), "model",
           404);
  }
}

std::vector<std::string> stop_strings(Fields& request) {
  const json* stop = request.get("stop");
  if (!stop) return {};
  const std::string should_be = fmt::format("a string or a list of at most {} strings of at most {} bytes each",
                                            limits::kMaxStopStrings, limits::kMaxStopStringBytes);
  const json list = stop->is_string() ? json::array({*stop}) : *stop;
  if (!list.is_array() || list.size() > limits::kMaxStopStrings) request.refuse_value("stop", should_be, *stop);
  std::vector<std::string> stops;
  for (const auto& s : list) {
    if (!s.is_string() || s.get_ref<const std::string&>().size() > limits::kMaxStopStringBytes) {
      request.refuse_value("stop", should_be, *stop);
    }
    if (!s.get_ref<const std::string&>().empty()) stops.push_back(s.get<std::string>());
  }
  return stops;
}

// max_tokens, or for chat also its newer name max_completion_tokens. 0 (a
// completion that only echoes and scores its prompt) needs `echo`.
std::optional<int64_t> max_tokens(Fields& request, bool chat) {
  const auto legacy = request.integer("max_tokens", chat ? 1 : 0, 1 << 30);
  if (!chat) return legacy;
  const auto current = request.integer("max_completion_tokens", 1, 1 << 30);
  if (legacy && current && *legacy != *current) {
    refuse("max_tokens and max_completion_tokens differ; give one of them", "max_completion_tokens");
  }
  return current ? current : legacy;
}

uint64_t first_seed(Fields& request) {
  const json* seed = request.get("seed");
  if (!seed) return std::random_device{}();
  if (!seed->is_number_integer()) request.refuse_value("seed", "an integer", *seed);
  return seed->get<uint64_t>();  // negative seeds wrap, as two's complement
}

// Fields OpenAI clients may send with the value that means "off".
void neutral_fields(Fields& request) {
  request.string("user");  // an end-user id for the provider's logs; rvec keeps no logs of requests
  if (const json* metadata = request.get("metadata"); metadata && !metadata->is_object()) {  // tags for stored completions; rvec stores none
    request.refuse_value("metadata", "an object", *metadata);
  }
  request.neutral("presence_penalty", 0);
  request.neutral("frequency_penalty", 0);
}

// Chat: `logprobs` (true or false) and `top_logprobs` (0 to 20, only with
// logprobs). Completions: `logprobs` (0 to 5 alternatives; null for none)
// and `echo`, which with logprobs scores the prompt too; max_tokens 0 needs echo.
void logprob_fields(Fields& request, const ServedModel& model, std::optional<int64_t> wanted_tokens,
                    ParsedRequest& parsed, GenerationRequest& base) {
  const bool chat = parsed.chat;
  if (chat) {
    parsed.logprobs = request.boolean("logprobs").value_or(false);
    const auto top = request.integer("top_logprobs", 0, limits::kMaxTopLogprobs);
    if (top && !parsed.logprobs) refuse("top_logprobs needs logprobs: true", "top_logprobs");
    base.top_logprobs = static_cast<size_t>(top.value_or(0));
  } else {
    const auto top = request.integer("logprobs", 0, limits::kMaxCompletionLogprobs);
    parsed.logprobs = top.has_value();
    base.top_logprobs = static_cast<size_t>(top.value_or(0));
    parsed.echo = request.boolean("echo").value_or(false);
    if (wanted_tokens == 0 && !parsed.echo) refuse("max_tokens may be 0 only with echo: true", "max_tokens");
  }
  if ((parsed.logprobs || parsed.echo) && !model.token_bytes) {
    const char* field = parsed.logprobs ? "logprobs" : "echo";
    refuse(fmt::format("{} needs the model's tokenizer, and this model folder has none", field), field);
  }
  base.logprobs = parsed.logprobs;
  base.prompt_logprobs = parsed.echo && (parsed.logprobs || wanted_tokens == 0);
}

// How many tokens to generate after a prompt of `prompt_tokens`; refuses
// what does not fit the context.
size_t checked_max_tokens(size_t prompt_tokens, std::optional<int64_t> wanted, bool chat, const ServedModel& model) {
  const char* prompt_field = chat ? "messages" : "prompt";
  if (prompt_tokens >= model.max_context) {
    refuse(fmt::format("the prompt has {} tokens; this model's context is {} tokens", prompt_tokens, model.max_context),
           prompt_field);
  }
  const size_t room = model.max_context - prompt_tokens;
  const size_t max_tokens = wanted ? static_cast<size_t>(*wanted) : chat ? room : std::min<size_t>(16, room);
  if (max_tokens > room) {
    refuse(fmt::format("this model's context is {} tokens; the prompt has {} and max_tokens asks for {} more",
                       model.max_context, prompt_tokens, max_tokens),
           "max_tokens");
  }
  return max_tokens;
}

}  // namespace

ParsedRequest parse_request(std::string_view body, Endpoint endpoint, const ServedModel& model) {
  const json root = parse_body(body);
  Fields request(root, "");
  ParsedRequest parsed;
  parsed.chat = endpoint == Endpoint::kChat;
  check_model(request, model);

  GenerationRequest base;
  const auto wanted_tokens = max_tokens(request, parsed.chat);
  base.sampling.temperature = static_cast<float>(request.number("temperature", 1.0, 0.0, 100.0));
  base.sampling.top_p = static_cast<float>(request.number("top_p", 1.0, 1e-9, 1.0));
  base.sampling.top_k = static_cast<uint32_t>(std::max<int64_t>(0, request.integer("top_k", -1, 1 << 30).value_or(0)));
  const uint64_t seed = first_seed(request);
  base.stop_strings = stop_strings(request);
  base.stop_tokens = model.stop_tokens;
  const auto n = request.integer("n", 1, static_cast<int64_t>(limits::kMaxChoices)).value_or(1);
  parsed.stream = request.boolean("stream").value_or(false);
  if (const json* options = request.get("stream_options")) {
    Fields stream_options = object_fields(*options, "stream_options");
    parsed.include_usage = stream_options.boolean("include_usage").value_or(false);
    stream_options.refuse_unread();
  }
  neutral_fields(request);
  logprob_fields(request, model, wanted_tokens, parsed, base);
  std::vector<std::vector<TokenId>> prompts;
  if (parsed.chat) {
    const auto messages = chat_messages(request);
    request.refuse_unread();
    prompts.push_back(refuse_model_errors("messages", [&] { return model.encode(model.render_chat(messages)); }));
  } else {
    const json* prompt = request.get("prompt");
    request.refuse_unread();
    prompts = completion_prompts(prompt, model);
  }
  if (prompts.size() * static_cast<size_t>(n) > limits::kMaxChoices) {
    refuse(fmt::format("{} prompts times n = {} asks for {} choices; at most {} are accepted in one request", prompts.size(),
                       n, prompts.size() * static_cast<size_t>(n), limits::kMaxChoices),
           "n");
  }
  for (auto& prompt : prompts) {
    parsed.prompt_tokens += prompt.size();
    base.prompt = std::move(prompt);
    base.max_tokens = checked_max_tokens(base.prompt.size(), wanted_tokens, parsed.chat, model);
    for (int64_t i = 0; i < n; ++i) {
      GenerationRequest choice = base;
      choice.sampling.seed = seed + parsed.choices.size();
      parsed.choices.push_back(std::move(choice));
    }
  }
  return parsed;
}

}  // namespace rvec
