#include "serve/api.hpp"

#include <chrono>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/error.hpp"

#include "serve/http_error.hpp"

namespace rvec {

using nlohmann::json;

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

namespace {

void generate(const std::string& body, httplib::Response& res, Endpoint endpoint, CompletionBackend& backend) {
  const ServedModel* model = backend.model();
  if (!model) refuse(backend.unavailable_reason(), "", 503);
  backend.complete(parse_request(body, endpoint, *model), res);
}

}  // namespace

void add_api_routes(HttpFront& front, const std::string& served_name, const std::string& model_path,
                    CompletionBackend& backend) {
  front.route("GET", "/health", [&backend](const httplib::Request&, const std::string&, httplib::Response& res) {
    const bool ready = backend.model() != nullptr;
    res.status = ready ? 200 : 503;
    res.set_content(json_text({{"status", ready ? "ok" : "loading"}}), "application/json");
  });
  const auto model_entry = [&backend, served_name, model_path] {
    const ServedModel* model = backend.model();
    return json{{"id", served_name},
                {"object", "model"},
                {"created", unix_now()},
                {"owned_by", "rvec"},
                {"root", model_path},
                {"max_model_len", model ? model->max_context : 0}};
  };
  front.route("GET", "/v1/models", [model_entry](const httplib::Request&, const std::string&, httplib::Response& res) {
    res.set_content(json_text({{"object", "list"}, {"data", json::array({model_entry()})}}), "application/json");
  });
  front.route("GET", "/v1/models/{id}", [model_entry, served_name, model_path](const httplib::Request& req,
                                                                               const std::string&, httplib::Response& res) {
    const std::string id = req.matches[1].str();
    if (id != served_name && id != model_path) {
      refuse(fmt::format("the model `{}` does not exist (this server serves `{}`)", valid_utf8(id), served_name), "model",
             404);
    }
    res.set_content(json_text(model_entry()), "application/json");
  });
  front.route("POST", "/v1/chat/completions",
              [&backend](const httplib::Request&, const std::string& body, httplib::Response& res) {
                generate(body, res, Endpoint::kChat, backend);
              });
  front.route("POST", "/v1/completions",
              [&backend](const httplib::Request&, const std::string& body, httplib::Response& res) {
                generate(body, res, Endpoint::kCompletion, backend);
              });
}

}  // namespace rvec
