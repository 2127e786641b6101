#include "serve/server.hpp"

#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <cstring>

#include "base/error.hpp"
#include "base/thread_pool.hpp"
#include "model/runtime.hpp"
#include "serve/engine_loop.hpp"
#include "text/token_ids.hpp"

namespace rvec {
namespace {

using nlohmann::json;

// A request the server refuses: HTTP status and an OpenAI error object.
struct HttpError {
  int status;
  std::string message;
  std::string param;
};

[[noreturn]] void refuse(std::string message, std::string param = "", int status = 400) {
  throw HttpError{status, std::move(message), std::move(param)};
}

json error_body(const HttpError& e) {
  const char* type = e.status == 404 ? "not_found_error" : e.status == 503 ? "service_unavailable"
                     : e.status >= 500 ? "server_error" : "invalid_request_error";
  return {{"error",
           {{"message", e.message},
            {"type", type},
            {"param", e.param.empty() ? json() : json(e.param)},
            {"code", e.status}}}};
}

void send_error(httplib::Response& res, const HttpError& e) {
  res.status = e.status;
  res.set_content(error_body(e).dump(), "application/json");
}

// ---- request fields ------------------------------------------------------------

double number_field(const json& body, const char* name, double fallback, double low, double high) {
  if (!body.contains(name) || body[name].is_null()) return fallback;
  if (!body[name].is_number()) refuse(fmt::format("{} must be a number", name), name);
  const double value = body[name].get<double>();
  if (!(value >= low && value <= high)) refuse(fmt::format("{} must be between {} and {} (got {})", name, low, high, value), name);
  return value;
}

std::optional<int64_t> integer_field(const json& body, const char* name, int64_t low, int64_t high) {
  if (!body.contains(name) || body[name].is_null()) return std::nullopt;
  if (!body[name].is_number_integer()) refuse(fmt::format("{} must be an integer", name), name);
  const auto value = body[name].get<int64_t>();
  if (value < low || value > high) refuse(fmt::format("{} must be between {} and {} (got {})", name, low, high, value), name);
  return value;
}

std::vector<std::string> stop_field(const json& body) {
  std::vector<std::string> stops;
  if (!body.contains("stop") || body["stop"].is_null()) return stops;
  const auto& stop = body["stop"];
  if (stop.is_string()) stops.push_back(stop.get<std::string>());
  if (stop.is_array()) {
    for (const auto& s : stop) {
      if (!s.is_string()) refuse("stop must be a string or a list of strings", "stop");
      stops.push_back(s.get<std::string>());
    }
  }
  if (!stop.is_string() && !stop.is_array()) refuse("stop must be a string or a list of strings", "stop");
  if (stops.size() > 16) refuse("stop may hold at most 16 strings", "stop");
  std::erase_if(stops, [](const std::string& s) { return s.empty(); });
  return stops;
}

std::string message_content(const json& message, size_t index) {
  const auto& content = message.contains("content") ? message["content"] : json();
  if (content.is_string()) return content.get<std::string>();
  if (content.is_array()) {  // [{"type": "text", "text": "..."}]
    std::string text;
    for (const auto& part : content) {
      if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string()) {
        refuse(fmt::format("messages[{}].content: only text parts are supported", index), "messages");
      }
      text += part["text"].get<std::string>();
    }
    return text;
  }
  refuse(fmt::format("messages[{}].content must be a string", index), "messages");
}

std::vector<TokenId> chat_prompt(const json& body, const ModelRuntime& runtime) {
  if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty()) {
    refuse("messages must be a non-empty list", "messages");
  }
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < body["messages"].size(); ++i) {
    const auto& m = body["messages"][i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      refuse(fmt::format("messages[{}] needs a string role", i), "messages");
    }
    messages.push_back({m["role"].get<std::string>(), message_content(m, i)});
  }
  try {
    return runtime.require_tokenizer().encode(runtime.require_chat().render(messages));
  } catch (const Error& e) {
    refuse(e.what(), "messages");
  }
}

std::vector<TokenId> completion_prompt(const json& body, const ModelRuntime& runtime) {
  const json& prompt = body.contains("prompt") ? body["prompt"] : json();
  try {
    if (prompt.is_string()) return runtime.require_tokenizer().encode(prompt.get<std::string>());
    if (prompt.is_array() && prompt.size() == 1 && prompt[0].is_string()) {
      return runtime.require_tokenizer().encode(prompt[0].get<std::string>());
    }
    if (prompt.is_array() && !prompt.empty() &&
        std::all_of(prompt.begin(), prompt.end(), [](const json& v) { return v.is_number(); })) {
      return token_ids_from_json(prompt, runtime.model->config().vocab, "prompt");
    }
  } catch (const Error& e) {
    refuse(e.what(), "prompt");
  }
  refuse("prompt must be a string, a list of one string, or a list of token ids", "prompt");
}

struct ParsedRequest {
  bool chat = false;
  bool stream = false;
  bool include_usage = false;
  size_t prompt_tokens = 0;
  std::vector<GenerationRequest> choices;
};

ParsedRequest parse_request(const json& body, bool chat, const ModelRuntime& runtime, size_t max_context) {
  if (!body.is_object()) refuse("the request body must be a JSON object");
  ParsedRequest parsed;
  parsed.chat = chat;
  GenerationRequest base;
  base.prompt = chat ? chat_prompt(body, runtime) : completion_prompt(body, runtime);
  parsed.prompt_tokens = base.prompt.size();
  if (base.prompt.size() >= max_context) {
    refuse(fmt::format("the prompt has {} tokens; this model's context is {} tokens", base.prompt.size(), max_context),
           chat ? "messages" : "prompt");
  }
  const auto max_tokens = integer_field(body, chat && body.contains("max_completion_tokens") ? "max_completion_tokens"
                                                                                            : "max_tokens",
                                        1, 1 << 30);
  const size_t room = max_context - base.prompt.size();
  base.max_tokens = max_tokens ? static_cast<size_t>(*max_tokens) : chat ? room : std::min<size_t>(16, room);
  if (base.max_tokens > room) {
    refuse(fmt::format("this model's context is {} tokens; the prompt has {} and max_tokens asks for {} more",
                       max_context, base.prompt.size(), base.max_tokens),
           "max_tokens");
  }
  base.sampling.temperature = static_cast<float>(number_field(body, "temperature", 1.0, 0.0, 100.0));
  base.sampling.top_p = static_cast<float>(number_field(body, "top_p", 1.0, 1e-9, 1.0));
  base.sampling.top_k = static_cast<uint32_t>(std::max<int64_t>(0, integer_field(body, "top_k", -1, 1 << 30).value_or(0)));
  const auto seed = integer_field(body, "seed", INT64_MIN, INT64_MAX);
  base.stop_strings = stop_field(body);
  base.stop_tokens = runtime.stop_tokens;
  const auto n = integer_field(body, "n", 1, 64).value_or(1);
  if (body.contains("stream") && !body["stream"].is_boolean() && !body["stream"].is_null()) refuse("stream must be a boolean", "stream");
  parsed.stream = body.value("stream", false);
  if (body.contains("stream_options") && body["stream_options"].is_object()) {
    parsed.include_usage = body["stream_options"].value("include_usage", false);
  }
  const uint64_t first_seed = seed ? static_cast<uint64_t>(*seed) : std::random_device{}();
  for (int64_t i = 0; i < n; ++i) {
    GenerationRequest choice = base;
    choice.sampling.seed = first_seed + static_cast<uint64_t>(i);
    parsed.choices.push_back(std::move(choice));
  }
  return parsed;
}

// ---- responses ------------------------------------------------------------------

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string request_id(bool chat) {
  static std::atomic<uint64_t> counter{0};
  return fmt::format("{}-rvec{}-{}", chat ? "chatcmpl" : "cmpl", unix_now(), ++counter);
}

json usage(size_t prompt, size_t completion) {
  return {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}};
}

class Server {
 public:
  explicit Server(const ServerOptions& options) : options_(options) {}
  int run();
  // Safe from any thread, before or while the server listens.
  void stop();

 private:
  void routes();
  void load_model();
  void handle_generate(const httplib::Request& req, httplib::Response& res, bool chat);
  void respond_whole(const ParsedRequest& parsed, const std::shared_ptr<Channel>& channel, httplib::Response& res);
  void respond_stream(ParsedRequest parsed, std::shared_ptr<Channel> channel, httplib::Response& res);
  bool ready() const { return ready_.load(); }
  json chunk(const std::string& id, bool chat, size_t choice, const json& delta_or_text, const json& finish) const;

  ServerOptions options_;
  httplib::Server http_;
  std::atomic<bool> ready_{false};
  ModelRuntime runtime_;
  std::unique_ptr<EngineLoop> engine_;
  std::string load_error_;
  std::atomic<bool> listen_returned_{false};
};

void Server::stop() {
  while (!http_.is_running() && !listen_returned_) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  http_.stop();
}

json Server::chunk(const std::string& id, bool chat, size_t choice, const json& delta_or_text, const json& finish) const {
  json c = {{"index", choice}, {"finish_reason", finish}, {"logprobs", nullptr}};
  c[chat ? "delta" : "text"] = delta_or_text;
  return {{"id", id},
          {"object", chat ? "chat.completion.chunk" : "text_completion"},
          {"created", unix_now()},
          {"model", options_.served_name},
          {"choices", json::array({c})}};
}

void Server::respond_whole(const ParsedRequest& parsed, const std::shared_ptr<Channel>& channel,
                           httplib::Response& res) {
  std::vector<std::string> texts(parsed.choices.size());
  std::vector<const char*> finish(parsed.choices.size(), "length");
  size_t completion_tokens = 0;
  while (const auto event = channel->next()) {
    texts[event->choice] += event->event.text;
    ++completion_tokens;
    if (event->event.finish != FinishReason::kNone) finish[event->choice] = finish_reason_name(event->event.finish);
  }
  if (const auto failure = channel->failure(); !failure.empty()) refuse(failure, "", 500);
  json choices = json::array();
  for (size_t i = 0; i < texts.size(); ++i) {
    json choice = {{"index", i}, {"finish_reason", finish[i]}, {"logprobs", nullptr}};
    if (parsed.chat) {
      choice["message"] = {{"role", "assistant"}, {"content", texts[i]}};
    } else {
      choice["text"] = texts[i];
    }
    choices.push_back(choice);
  }
  const json body = {{"id", request_id(parsed.chat)},
                     {"object", parsed.chat ? "chat.completion" : "text_completion"},
                     {"created", unix_now()},
                     {"model", options_.served_name},
                     {"choices", choices},
                     {"usage", usage(parsed.prompt_tokens, completion_tokens)}};
  res.set_content(body.dump(), "application/json");
}

void Server::respond_stream(ParsedRequest parsed, std::shared_ptr<Channel> channel, httplib::Response& res) {
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream", [this, parsed = std::move(parsed), channel](size_t, httplib::DataSink& sink) {
        const auto id = request_id(parsed.chat);
        const auto send = [&](const std::string& data) {
          const std::string frame = "data: " + data + "\n\n";
          return sink.write(frame.data(), frame.size());
        };
        bool open = true;
        if (parsed.chat) {
          for (size_t i = 0; i < parsed.choices.size() && open; ++i) {
            open = send(chunk(id, true, i, {{"role", "assistant"}, {"content", ""}}, nullptr).dump());
          }
        }
        size_t completion_tokens = 0;
        while (open) {
          const auto event = channel->next();
          if (!event) break;
          ++completion_tokens;
          const auto& e = event->event;
          const json finish = e.finish == FinishReason::kNone ? json() : json(finish_reason_name(e.finish));
          if (!e.text.empty()) {
            open = send(chunk(id, parsed.chat, event->choice, parsed.chat ? json{{"content", e.text}} : json(e.text),
                              nullptr).dump());
          }
          if (open && !finish.is_null()) {
            open = send(chunk(id, parsed.chat, event->choice, parsed.chat ? json::object() : json(""), finish).dump());
          }
        }
        if (!open) {  // the client went away: stop generating for it
          engine_->cancel(channel);
          return false;
        }
        if (const auto failure = channel->failure(); !failure.empty()) {
          send(error_body({500, failure, ""}).dump());
        } else if (parsed.include_usage) {
          json last = chunk(id, parsed.chat, 0, json(), nullptr);
          last["choices"] = json::array();
          last["usage"] = usage(parsed.prompt_tokens, completion_tokens);
          send(last.dump());
        }
        send("[DONE]");
        sink.done();
        return true;
      });
}

void Server::handle_generate(const httplib::Request& req, httplib::Response& res, bool chat) {
  try {
    if (!ready()) refuse(load_error_.empty() ? "the model is still loading" : load_error_, "", 503);
    json body;
    try {
      body = json::parse(req.body);
    } catch (const json::exception& e) {
      refuse(fmt::format("the request body is not valid JSON: {}", e.what()));
    }
    if (body.is_object() && body.contains("model") && body["model"].is_string()) {
      const auto model = body["model"].get<std::string>();
      if (model != options_.served_name && model != options_.model_path) {
        refuse(fmt::format("the model `{}` does not exist (this server serves `{}`)", model, options_.served_name),
               "model", 404);
      }
    }
    auto parsed = parse_request(body, chat, runtime_, engine_->max_context());
    auto channel = engine_->submit(parsed.choices);
    std::string error;
    if (!channel->wait_accepted(error)) refuse(error);
    if (parsed.stream) {
      respond_stream(std::move(parsed), std::move(channel), res);
    } else {
      respond_whole(parsed, channel, res);
    }
  } catch (const HttpError& e) {
    send_error(res, e);
  }
}

void Server::routes() {
  http_.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    res.status = ready() ? 200 : 503;
    res.set_content(json{{"status", ready() ? "ok" : "loading"}}.dump(), "application/json");
  });
  http_.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    const json model = {{"id", options_.served_name},
                        {"object", "model"},
                        {"created", unix_now()},
                        {"owned_by", "rvec"},
                        {"root", options_.model_path},
                        {"max_model_len", ready() ? engine_->max_context() : 0}};
    res.set_content(json{{"object", "list"}, {"data", json::array({model})}}.dump(), "application/json");
  });
  http_.Post("/v1/chat/completions",
             [this](const httplib::Request& req, httplib::Response& res) { handle_generate(req, res, true); });
  http_.Post("/v1/completions",
             [this](const httplib::Request& req, httplib::Response& res) { handle_generate(req, res, false); });
  http_.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    send_error(res, {res.status, fmt::format("{} {} is not an endpoint of this server", req.method, req.path), ""});
  });
  http_.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, {500, what, ""});
  });
}

void Server::load_model() {
  try {
    if (const char* delay = std::getenv("RVEC_TEST_SLOW_LOAD_MS")) {  // test hook: a slow disk
      std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(delay)));
    }
    runtime_ = ModelRuntime::load(options_.model_path, options_.threads);
    engine_ = std::make_unique<EngineLoop>(*runtime_.model, runtime_.tokenizer, options_.max_batch,
                                           options_.max_context);
    ready_ = true;
    fmt::print(stderr, "rvec serve: model {} ready ({} layers, context {} tokens)\n", options_.served_name,
               runtime_.model->config().layers, engine_->max_context());
  } catch (const Error& e) {
    load_error_ = e.what();
    fmt::print(stderr, "rvec: error: {}\n", e.what());
    stop();
  }
}

int Server::run() {
  routes();
  http_.new_task_queue = [] { return new httplib::ThreadPool(64); };
  http_.set_payload_max_length(64 << 20);
  http_.set_read_timeout(600);
  http_.set_write_timeout(600);
  const int port = options_.port == 0 ? http_.bind_to_any_port(options_.host)
                                      : (http_.bind_to_port(options_.host, options_.port) ? options_.port : -1);
  if (port < 0) io_error("cannot listen on {}:{} (in use, or not an address of this machine)", options_.host, options_.port);
  fmt::print(stderr, "rvec serve: listening on http://{}:{} (model {} loading)\n", options_.host, port,
             options_.served_name);
  std::fflush(stderr);
  std::thread loader([this] { load_model(); });
  http_.listen_after_bind();
  listen_returned_ = true;
  loader.join();
  engine_.reset();
  if (!load_error_.empty()) return exit_code(ErrorKind::kBadInput);
  fmt::print(stderr, "rvec serve: stopped\n");
  return 0;
}

}  // namespace

static int g_signal_pipe[2] = {-1, -1};

int run_server(const ServerOptions& given) {
  ServerOptions options = given;
  if (options.served_name.empty()) {
    options.served_name = std::filesystem::path(options.model_path).lexically_normal().filename().string();
    if (options.served_name.empty()) {
      options.served_name = std::filesystem::path(options.model_path).lexically_normal().parent_path().filename().string();
    }
  }
  if (options.threads == 0) options.threads = default_thread_count();
  // SIGINT/SIGTERM may land on any thread (OpenBLAS starts its own before
  // main), so the handler only writes the signal number to a pipe; a watcher
  // thread reads it and stops the server cleanly.
  if (pipe(g_signal_pipe) != 0) fail_errno("pipe");
  struct sigaction action {};
  action.sa_handler = [](int signal) {
    const char byte = static_cast<char>(signal);
    [[maybe_unused]] const auto n = write(g_signal_pipe[1], &byte, 1);
  };
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  Server server(options);
  std::thread watcher([&] {
    char byte = 0;
    if (read(g_signal_pipe[0], &byte, 1) != 1 || byte == 0) return;  // 0: the server ended on its own
    fmt::print(stderr, "rvec serve: {}, shutting down\n", strsignal(byte));
    server.stop();
  });
  const auto end_watcher = [&] {
    const char zero = 0;
    [[maybe_unused]] const auto n = write(g_signal_pipe[1], &zero, 1);
    watcher.join();
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
  };
  int code = 0;
  try {
    code = server.run();
  } catch (...) {
    end_watcher();
    throw;
  }
  end_watcher();
  return code;
}

}  // namespace rvec
