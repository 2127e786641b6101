#include "serve/server.hpp"

#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/error.hpp"
#include "base/text.hpp"
#include "base/test_hooks.hpp"
#include "base/thread_pool.hpp"
#include "engine/runtime.hpp"
#include "serve/api.hpp"
#include "serve/choice_output.hpp"
#include "serve/engine_loop.hpp"
#include "serve/http_error.hpp"
#include "serve/http_front.hpp"
#include "serve/limits.hpp"

namespace rvec {
namespace {

using nlohmann::json;

std::string request_id(bool chat) {
  static std::atomic<uint64_t> counter{0};
  return fmt::format("{}-rvec{}-{}", chat ? "chatcmpl" : "cmpl", unix_now(), ++counter);
}

json usage(size_t prompt, size_t completion) {
  return {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}};
}

// The server: HTTP front, the model loaded on a thread of its own, the engine
// loop. Handlers run on the front's connection threads.
class Server final : public CompletionBackend {
 public:
  explicit Server(const ServerOptions& options)
      : options_(options), http_(options.max_connections, serve_limits::max_body_bytes(options.max_context)) {}
  int run();
  // Safe from any thread, before or while the server listens.
  void stop();

  const ServedModel* model() const override { return served_.load(); }
  std::string unavailable_reason() const override;
  void complete(ParsedRequest parsed, httplib::Response& res) override;

 private:
  void load_model();
  void respond_whole(const ParsedRequest& parsed, const std::shared_ptr<Channel>& channel, httplib::Response& res);
  void respond_stream(ParsedRequest parsed, std::shared_ptr<Channel> channel, httplib::Response& res);
  json chunk(const std::string& id, bool chat, size_t choice, const json& delta_or_text, const json& finish) const;

  ServerOptions options_;
  HttpFront http_;
  // Written by the loader thread before served_ points at served_model_;
  // read by handlers only after that.
  ModelRuntime runtime_;
  std::unique_ptr<EngineLoop> engine_;
  ServedModel served_model_;
  std::atomic<const ServedModel*> served_{nullptr};
  mutable std::mutex load_error_mutex_;
  std::string load_error_;  // why the model could not be loaded (guarded by load_error_mutex_)
  std::atomic<bool> listen_returned_{false};
};

void Server::stop() {
  while (!http_.is_running() && !listen_returned_) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  http_.stop();
}

std::string Server::unavailable_reason() const {
  std::lock_guard lock(load_error_mutex_);
  return load_error_.empty() ? "the model is still loading" : load_error_;
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

void Server::complete(ParsedRequest parsed, httplib::Response& res) {
  auto channel = engine_->submit(parsed.choices);
  std::string error;
  if (!channel->wait_accepted(error)) refuse(valid_utf8(error));
  if (parsed.stream) {
    respond_stream(std::move(parsed), std::move(channel), res);
  } else {
    respond_whole(parsed, channel, res);
  }
}

void Server::respond_whole(const ParsedRequest& parsed, const std::shared_ptr<Channel>& channel,
                           httplib::Response& res) {
  const size_t count = parsed.choices.size();
  std::vector<ChoiceOutput> outputs;
  for (size_t i = 0; i < count; ++i) outputs.emplace_back(parsed, i, served_model_);
  std::vector<std::string> texts(count);
  std::vector<json> logprobs(count, parsed.logprobs ? empty_logprobs(parsed.chat) : json());
  std::vector<const char*> finish(count, "length");
  size_t completion_tokens = 0;
  while (const auto event = channel->next()) {
    const ChoicePart part = outputs[event->choice].add(event->event);
    texts[event->choice] += part.text;
    if (!part.logprobs.is_null()) append_logprobs(logprobs[event->choice], part.logprobs);
    completion_tokens += event->event.token >= 0;
    if (event->event.finish != FinishReason::kNone) finish[event->choice] = finish_reason_name(event->event.finish);
  }
  if (const auto failure = channel->failure(); !failure.empty()) refuse(failure, "", 500);
  json choices = json::array();
  for (size_t i = 0; i < count; ++i) {
    json choice = {{"index", i}, {"finish_reason", finish[i]}, {"logprobs", logprobs[i]}};
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
  res.set_content(json_text(body), "application/json");
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
            open = send(json_text(chunk(id, true, i, {{"role", "assistant"}, {"content", ""}}, nullptr)));
          }
        }
        std::vector<ChoiceOutput> outputs;
        for (size_t i = 0; i < parsed.choices.size(); ++i) outputs.emplace_back(parsed, i, served_model_);
        size_t completion_tokens = 0;
        while (open) {
          const auto event = channel->next();
          if (!event) break;
          const auto& e = event->event;
          completion_tokens += e.token >= 0;
          const json finish = e.finish == FinishReason::kNone ? json() : json(finish_reason_name(e.finish));
          const ChoicePart part = outputs[event->choice].add(e);
          if (!part.text.empty() || !part.logprobs.is_null()) {
            json piece = chunk(id, parsed.chat, event->choice,
                               parsed.chat ? json{{"content", part.text}} : json(part.text), nullptr);
            piece["choices"][0]["logprobs"] = part.logprobs;
            open = send(json_text(piece));
          }
          if (open && !finish.is_null()) {
            open = send(json_text(chunk(id, parsed.chat, event->choice, parsed.chat ? json::object() : json(""), finish)));
          }
        }
        if (!open) {  // the client went away: stop generating for it
          engine_->cancel(channel);
          return false;
        }
        if (const auto failure = channel->failure(); !failure.empty()) {
          send(json_text(error_body({500, failure, ""})));
        } else if (parsed.include_usage) {
          json last = chunk(id, parsed.chat, 0, json(), nullptr);
          last["choices"] = json::array();
          last["usage"] = usage(parsed.prompt_tokens, completion_tokens);
          send(json_text(last));
        }
        send("[DONE]");
        sink.done();
        return true;
      });
}

void Server::load_model() {
  try {
    if (const auto delay = test_hooks::slow_load_ms()) std::this_thread::sleep_for(std::chrono::milliseconds(*delay));
    runtime_ = ModelRuntime::load(options_.model_path, options_.threads);
    engine_ = std::make_unique<EngineLoop>(*runtime_.model, runtime_.tokenizer, options_.max_batch,
                                           options_.max_context);
    served_model_ = {options_.served_name,
                     options_.model_path,
                     engine_->max_context(),
                     runtime_.model->config().vocab,
                     [this](const std::string& text) { return runtime_.require_tokenizer().encode(text); },
                     [this](const std::vector<ChatMessage>& messages) { return runtime_.require_chat().render(messages); },
                     runtime_.stop_tokens,
                     runtime_.tokenizer ? [tokenizer = runtime_.tokenizer](TokenId id) { return tokenizer->token_bytes(id); }
                                        : std::function<std::string(TokenId)>()};
    served_ = &served_model_;
    fmt::print(stderr, "rvec serve: model {} ready ({} layers, context {} tokens)\n", options_.served_name,
               runtime_.model->config().layers, engine_->max_context());
  } catch (const Error& e) {
    {
      std::lock_guard lock(load_error_mutex_);
      load_error_ = e.what();
    }
    fmt::print(stderr, "rvec: error: {}\n", one_line(e.what()));
    stop();
  }
}

int Server::run() {
  add_api_routes(http_, options_.served_name, options_.model_path, *this);
  http_.set_allowed_origins(options_.allowed_origins);
  const int port = http_.bind(options_.host, options_.port);
  if (port < 0) io_error("cannot listen on {}:{} (in use, or not an address of this machine)", options_.host, options_.port);
  fmt::print(stderr, "rvec serve: listening on http://{}:{} (model {} loading)\n", options_.host, port,
             options_.served_name);
  std::fflush(stderr);
  std::thread loader([this] { load_model(); });
  http_.listen_after_bind();
  listen_returned_ = true;
  loader.join();
  engine_.reset();
  if (served_ == nullptr) return exit_code(ErrorKind::kBadInput);
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
  mallopt(M_ARENA_MAX, serve_limits::kMallocArenas);
  // SIGINT/SIGTERM may land on any thread, so the handler only writes the
  // signal number to a pipe; a watcher thread reads it and stops the server
  // cleanly.
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
