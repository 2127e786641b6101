// Errors of `rvec serve` as OpenAI error objects, and the one way the server
// turns JSON into response text.
//
//   {"error": {"message": "...", "type": "invalid_request_error", "param": "stop", "code": 400}}
//
// Text from outside the server (request lines, paths, headers, bodies, and
// messages that quote them) is made valid UTF-8 by valid_utf8() before it
// reaches JSON; json_text() never throws, so no response can fail to print.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace rvec {

// A request the server refuses: its HTTP status and what is wrong.
struct HttpError {
  int status = 400;
  std::string message;
  std::string param;  // the request field concerned, or ""
};

// Throws HttpError.
[[noreturn]] void refuse(std::string message, std::string param = "", int status = 400);

// `text` with every ill-formed UTF-8 sequence replaced by U+FFFD.
std::string valid_utf8(std::string_view text);

// The OpenAI error object for `error` (message and param made valid UTF-8).
nlohmann::json error_body(const HttpError& error);

// `value` serialised; strings that are not valid UTF-8 are repaired, never thrown on.
std::string json_text(const nlohmann::json& value);

}  // namespace rvec
