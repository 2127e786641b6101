// The OpenAI routes of `rvec serve` on an HttpFront, over whatever runs the
// requests: the engine in the server, a stand-in in the fuzzer.
//
//   POST /v1/chat/completions   POST /v1/completions   GET /v1/models   GET /v1/models/{id}   GET /health
#pragma once

#include <string>

#include "serve/http_front.hpp"
#include "serve/request.hpp"

namespace rvec {

// Runs requests. Called from the HTTP threads, so all of it must be thread-safe.
class CompletionBackend {
 public:
  virtual ~CompletionBackend() = default;
  // The served model once it can take requests, else nullptr.
  virtual const ServedModel* model() const = 0;
  // Why model() is null ("the model is still loading").
  virtual std::string unavailable_reason() const = 0;
  // Runs a parsed request and writes its response, whole or streamed; may throw HttpError.
  virtual void complete(ParsedRequest request, httplib::Response& res) = 0;
};

// Adds the routes; `backend` must outlive `front`'s serving.
void add_api_routes(HttpFront& front, const std::string& served_name, const std::string& model_path,
                    CompletionBackend& backend);

// Seconds since the epoch, for "created".
int64_t unix_now();

}  // namespace rvec
