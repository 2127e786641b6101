#include "serve/http_error.hpp"

#include "text/unicode.hpp"

namespace rvec {

void refuse(std::string message, std::string param, int status) {
  throw HttpError{status, std::move(message), std::move(param)};
}

std::string valid_utf8(std::string_view text) { return replace_invalid_utf8(text); }

namespace {
const char* error_type(int status) {
  if (status == 404) return "not_found_error";
  if (status == 503) return "service_unavailable";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}
}  // namespace

nlohmann::json error_body(const HttpError& error) {
  const nlohmann::json param = error.param.empty() ? nlohmann::json() : nlohmann::json(valid_utf8(error.param));
  return {{"error",
           {{"message", valid_utf8(error.message)},
            {"type", error_type(error.status)},
            {"param", param},
            {"code", error.status}}}};
}

std::string json_text(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace rvec
