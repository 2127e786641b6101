// A client for OpenAI-compatible chat servers (vLLM, llama.cpp, SGLang,
// Ollama, rvec serve), built for long evaluation runs:
//   - every sampling field is sent explicitly (server defaults differ);
//   - 429, 5xx, refused or dropped connections, timeouts, unreadable bodies,
//     answers longer than 64 MiB (cut off there) and malformed completions
//     (no choices[0].message, a content that is not a string) are retried
//     with exponential backoff and jitter: a malformed completion is the
//     server's failure, never an empty answer;
//   - other 4xx answers (400: context too long, ...) are final for the item.
// One ChatClient per thread (it owns a libcurl handle).
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "text/chat_template.hpp"

namespace rvec {

struct ClientOptions {
  std::string endpoint;  // http://host:port, .../v1 or .../v1/chat/completions
  std::string model;
  double temperature = 0.6;
  double top_p = 0.95;
  int max_tokens = 4096;
  std::vector<std::string> stop;
  double timeout_s = 3600;  // long reasoning answers take minutes
  int retries = 6;
  int retry_base_ms = 1000;  // first backoff; doubles each retry, capped at 60 s
};

// One token of a prompt echoed back with log-probabilities
// (ChatClient::score): where it starts in the prompt, in Unicode code points,
// and its log-probability (none for the first token).
struct ScoredToken {
  int64_t offset = 0;
  std::optional<double> logprob;
};

struct ChatResult {
  bool ok = false;
  bool final_failure = false;  // a 4xx other than 429: do not retry this item
  long status = 0;
  std::string content;
  std::string reasoning;  // reasoning_content / reasoning, when the server splits it out
  std::string finish_reason;
  int64_t prompt_tokens = 0, completion_tokens = 0;
  double latency_s = 0;
  int attempts = 0;
  std::string error;
  std::vector<ScoredToken> scored;  // score() only
};

// The chat-completions and completions URLs for an endpoint as users write it.
std::string chat_url(const std::string& endpoint);
std::string completions_url(const std::string& endpoint);

class ChatClient {
 public:
  explicit ChatClient(ClientOptions options);
  ~ChatClient();
  ChatClient(const ChatClient&) = delete;
  ChatClient& operator=(const ChatClient&) = delete;

  ChatResult complete(const std::vector<ChatMessage>& messages, uint64_t seed);
  // The log-probabilities of `prompt`'s own tokens, from /v1/completions with
  // echo, logprobs 0 and max_tokens 0 (as lm-evaluation-harness scores
  // multiple choice); tokens the server generated anyway are left out.
  ChatResult score(const std::string& prompt);

 private:
  // Reads a 200 answer into the result; returns what is wrong with it ("" if nothing).
  using Reader = std::string (*)(const nlohmann::json& answer, ChatResult& result);
  ChatResult attempt(const std::string& url, const std::string& body, Reader read, const char* what);
  ChatResult with_retries(const std::string& url, const std::string& body, Reader read, const char* what);

  ClientOptions options_;
  std::string url_, completions_url_;
  void* curl_;
  std::mt19937_64 jitter_;
};

}  // namespace rvec
