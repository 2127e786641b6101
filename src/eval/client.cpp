#include "eval/client.hpp"

#include <curl/curl.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/error.hpp"
#include "text/unicode.hpp"

namespace rvec {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// The most of one answer the client holds: a completion with echoed
// log-probabilities of a long prompt is a few MB; a server that sends more is
// broken and is cut off rather than read until the request times out.
constexpr size_t kMaxAnswerBytes = size_t{64} << 20;

struct AnswerBody {
  std::string text;
  bool too_long = false;
};

// libcurl's write callback: returning less than it was given aborts the transfer.
size_t append_body(char* data, size_t size, size_t count, void* out) {
  auto& body = *static_cast<AnswerBody*>(out);
  if (body.text.size() + size * count > kMaxAnswerBytes) {
    body.too_long = true;
    return 0;
  }
  body.text.append(data, size * count);
  return size * count;
}

void global_curl_init() {
  static const bool done = [] { return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; }();
  if (!done) fail(ErrorKind::kIo, "libcurl failed to initialise");
}

std::string error_message(const std::string& body) {
  const auto parsed = json::parse(body, nullptr, false);
  if (parsed.is_object() && parsed.contains("error")) {
    const auto& e = parsed["error"];
    if (e.is_object() && e.contains("message") && e["message"].is_string()) return e["message"].get<std::string>();
    if (e.is_string()) return e.get<std::string>();
  }
  return body.substr(0, 200);
}

// A string field of `object`, or nothing when absent or null; false when it
// is there with another type.
bool optional_string(const json& object, const char* name, std::string& out) {
  const auto it = object.find(name);
  if (it == object.end() || it->is_null()) return true;
  if (!it->is_string()) return false;
  out = it->get<std::string>();
  return true;
}

bool optional_count(const json& object, const char* name, int64_t& out) {
  const auto it = object.find(name);
  if (it == object.end() || it->is_null()) return true;
  if (!it->is_number_unsigned()) return false;
  out = it->get<int64_t>();
  return true;
}

// choices[0] of an answer, or nullptr when it has none that is an object.
const json* first_choice(const json& parsed) {
  if (!parsed.is_object() || !parsed.contains("choices") || !parsed["choices"].is_array() || parsed["choices"].empty() ||
      !parsed["choices"][0].is_object()) {
    return nullptr;
  }
  return &parsed["choices"][0];
}

// Fills `r` from a chat completion; returns what is wrong with it ("" if
// nothing). A completion must hold choices[0].message with a string
// `content` (null only beside a reasoning text); a malformed one is the
// server's failure, never a model's (empty) answer.
std::string read_completion(const json& parsed, ChatResult& r) {
  if (first_choice(parsed) == nullptr) return "no choices[0]";
  const json& choice = *first_choice(parsed);
  if (!choice.contains("message") || !choice["message"].is_object()) return "choices[0] has no message";
  const json& message = choice["message"];
  if (!optional_string(message, "reasoning", r.reasoning) || !optional_string(message, "reasoning_content", r.reasoning)) {
    return "the message's reasoning is not a string";
  }
  const auto content = message.find("content");
  const bool has_content = content != message.end() && !content->is_null();
  if (has_content && !content->is_string()) {
    return fmt::format("the message's content is {}, not a string", content->dump().substr(0, 40));
  }
  if (!has_content && r.reasoning.empty()) return "the message has no content";
  if (has_content) r.content = content->get<std::string>();
  if (!optional_string(choice, "finish_reason", r.finish_reason)) return "finish_reason is not a string";
  if (parsed.contains("usage") && !parsed["usage"].is_null()) {
    const json& usage = parsed["usage"];
    if (!usage.is_object() || !optional_count(usage, "prompt_tokens", r.prompt_tokens) ||
        !optional_count(usage, "completion_tokens", r.completion_tokens)) {
      return "usage does not hold token counts";
    }
  }
  return "";
}

// Fills r.scored from a completion with echo and logprobs: token_logprobs
// and text_offset of the same length, numbers (the first log-probability may be null).
std::string read_scored_prompt(const json& parsed, ChatResult& r) {
  if (first_choice(parsed) == nullptr) return "no choices[0]";
  const json logprobs = first_choice(parsed)->value("logprobs", json());
  if (!logprobs.is_object()) return "choices[0] has no logprobs";
  const json values = logprobs.value("token_logprobs", json());
  const json offsets = logprobs.value("text_offset", json());
  if (!values.is_array() || !offsets.is_array() || values.size() != offsets.size() || values.empty()) {
    return "choices[0].logprobs has no token_logprobs and text_offset of the same length";
  }
  for (size_t i = 0; i < values.size(); ++i) {
    if (!offsets[i].is_number_integer() || !(values[i].is_number() || (i == 0 && values[i].is_null()))) {
      return fmt::format("choices[0].logprobs has a bad token_logprobs or text_offset at token {}", i);
    }
    const auto logprob = values[i].is_null() ? std::nullopt : std::optional(values[i].get<double>());
    r.scored.push_back({offsets[i].get<int64_t>(), logprob});
  }
  if (parsed.contains("usage") && parsed["usage"].is_object()) {
    optional_count(parsed["usage"], "prompt_tokens", r.prompt_tokens);
  }
  return "";
}

// The API's base URL (".../v1") for an endpoint as users write it: the
// server's address, its /v1, or one of its routes.
std::string server_base(const std::string& endpoint) {
  std::string url = endpoint;
  while (url.ends_with("/")) url.pop_back();
  for (const std::string_view route : {"/chat/completions", "/completions"}) {
    if (url.ends_with(route)) return url.substr(0, url.size() - route.size());
  }
  return url.ends_with("/v1") ? url : url + "/v1";
}

}  // namespace

std::string chat_url(const std::string& endpoint) { return server_base(endpoint) + "/chat/completions"; }
std::string completions_url(const std::string& endpoint) { return server_base(endpoint) + "/completions"; }

ChatClient::ChatClient(ClientOptions options)
    : options_(std::move(options)),
      url_(chat_url(options_.endpoint)),
      completions_url_(completions_url(options_.endpoint)),
      jitter_(std::random_device{}()) {
  global_curl_init();
  curl_ = curl_easy_init();
  if (curl_ == nullptr) fail(ErrorKind::kIo, "libcurl could not create a handle");
}

ChatClient::~ChatClient() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

ChatResult ChatClient::attempt(const std::string& url, const std::string& body, Reader read, const char* what) {
  CURL* curl = static_cast<CURL*>(curl_);
  ChatResult r;
  AnswerBody answer;
  const std::string& response = answer.text;
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout_s * 1000));
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  const auto start = Clock::now();
  const CURLcode code = curl_easy_perform(curl);
  r.latency_s = std::chrono::duration<double>(Clock::now() - start).count();
  curl_slist_free_all(headers);
  if (answer.too_long) {
    r.error = fmt::format("{}: the server's answer is longer than {} MiB", url, kMaxAnswerBytes >> 20);
    return r;
  }
  if (code != CURLE_OK) {
    r.error = fmt::format("{}: {}", url, curl_easy_strerror(code));
    return r;
  }
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.status);
  if (r.status != 200) {
    r.error = replace_invalid_utf8(fmt::format("{}: HTTP {}: {}", url, r.status, error_message(response)));
    r.final_failure = r.status >= 400 && r.status < 500 && r.status != 429 && r.status != 408;
    return r;
  }
  const auto parsed = json::parse(response, nullptr, false);
  if (const std::string why = read(parsed, r); !why.empty()) {
    r.error = replace_invalid_utf8(
        fmt::format("{}: the server's answer is not {} ({}): {}", url, what, why, response.substr(0, 120)));
    return r;
  }
  r.ok = true;
  return r;
}

ChatResult ChatClient::complete(const std::vector<ChatMessage>& messages, uint64_t seed) {
  json body = {{"model", options_.model},
               {"temperature", options_.temperature},
               {"top_p", options_.top_p},
               {"max_tokens", options_.max_tokens},
               {"seed", seed},
               {"n", 1},
               {"stream", false}};
  body["messages"] = json::array();
  for (const auto& m : messages) body["messages"].push_back({{"role", m.role}, {"content", m.content}});
  if (!options_.stop.empty()) body["stop"] = options_.stop;
  return with_retries(url_, body.dump(), read_completion, "a chat completion");
}

ChatResult ChatClient::score(const std::string& prompt) {
  const json body = {{"model", options_.model}, {"prompt", prompt}, {"echo", true}, {"logprobs", 0},
                     {"max_tokens", 0},         {"temperature", 0},  {"n", 1},       {"stream", false}};
  ChatResult result = with_retries(completions_url_, body.dump(), read_scored_prompt, "a completion with echoed logprobs");
  const auto end = static_cast<int64_t>(utf8_character_starts(prompt));
  std::erase_if(result.scored, [end](const ScoredToken& token) { return token.offset >= end; });
  return result;
}

ChatResult ChatClient::with_retries(const std::string& url, const std::string& body, Reader read, const char* what) {
  ChatResult result;
  for (int attempt_no = 0;; ++attempt_no) {
    result = attempt(url, body, read, what);
    result.attempts = attempt_no + 1;
    if (result.ok || result.final_failure || attempt_no >= options_.retries) return result;
    const double base = options_.retry_base_ms * std::pow(2.0, attempt_no);
    const double jittered = std::min(60000.0, base) * std::uniform_real_distribution<double>(0.75, 1.25)(jitter_);
    std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int64_t>(jittered)));
  }
}

}  // namespace rvec
