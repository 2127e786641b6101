// `rvec serve`: the OpenAI HTTP API over the built-in engine.
//
//   POST /v1/chat/completions   messages -> ChatML prompt -> choices[].message
//   POST /v1/completions        prompt (text or token ids) -> choices[].text
//   GET  /v1/models             the one served model
//   GET  /v1/models/{id}        the served model, 404 for any other id
//   GET  /health                200 when ready, 503 while loading
//
// Sampling fields: temperature, top_p, top_k, max_tokens (or
// max_completion_tokens), seed, stop, n, stream (server-sent events, with
// stream_options.include_usage); logprobs and top_logprobs (chat), logprobs
// and echo (completions; choice_output.hpp has their shapes). Requests that arrive together are decoded
// together in one batch. Errors are OpenAI error objects: 400 for a bad
// request (bad JSON, bad field, prompt too long), 404 for an unknown model or
// route, 503 while the model loads; limits.hpp has the limits on connections,
// sizes and times, and http_front.hpp how they are enforced.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "serve/limits.hpp"

namespace rvec {

struct ServerOptions {
  std::string model_path;
  std::string served_name;  // defaults to the folder's name
  std::string host = "127.0.0.1";
  int port = 8000;  // 0 picks a free port (printed on stderr)
  size_t threads = 0;  // 0: every core
  size_t max_batch = 32;
  size_t max_context = 4096;
  size_t max_connections = serve_limits::kMaxConnections;
  std::vector<std::string> allowed_origins;  // CORS (HttpFront::set_allowed_origins); "*" for any
};

// Serves until SIGINT or SIGTERM; returns the process exit code.
int run_server(const ServerOptions& options);

}  // namespace rvec
