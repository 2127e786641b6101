// rvec tokenize / generate / serve: running models with the built-in engine.
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/error.hpp"
#include "base/thread_pool.hpp"
#include "cli/commands.hpp"
#include "engine/batcher.hpp"
#include "engine/runtime.hpp"
#include "serve/server.hpp"
#include "text/token_ids.hpp"
#include "text/tokenizer.hpp"

namespace rvec::cli {
namespace {

using Clock = std::chrono::steady_clock;

// ---- tokenize ------------------------------------------------------------------

struct TokenizeOptions {
  std::string model, text;
  bool decode = false, json = false;
};

void run_tokenize(const TokenizeOptions& o) {
  const auto tokenizer = Tokenizer::load(o.model);
  if (o.decode) {
    const auto ids = parse_token_id_list(o.text, tokenizer->size());
    for (const auto id : ids) {
      if (tokenizer->piece(id).empty()) fail(ErrorKind::kUsage, "token id {} is not in {}", id, tokenizer->path());
    }
    const auto text = tokenizer->decode(ids);
    if (o.json) {
      fmt::print("{}\n", nlohmann::json{{"ids", ids}, {"text", text}}.dump());
    } else {
      fmt::print("{}\n", text);
    }
    return;
  }
  const auto ids = tokenizer->encode(o.text);
  if (o.json) {
    nlohmann::json pieces = nlohmann::json::array();
    for (const auto id : ids) pieces.push_back(tokenizer->piece(id));
    fmt::print("{}\n", nlohmann::json{{"ids", ids}, {"pieces", pieces}, {"count", ids.size()}}.dump());
    return;
  }
  fmt::print("{}\n", fmt::join(ids, " "));
  for (const auto id : ids) {
    fmt::print("{:>8}  {}\n", id, nlohmann::json(tokenizer->decode(std::vector<TokenId>{id})).dump());
  }
  fmt::print("{} tokens\n", ids.size());
}

// ---- generate ------------------------------------------------------------------

struct GenerateOptions {
  std::string model, prompt, ids, system;
  bool chat = false, json = false;
  size_t max_tokens = 256, threads = 0, context = 4096;
  float temperature = 0.0f, top_p = 1.0f;
  uint32_t top_k = 0;
  uint64_t seed = 0;
  std::vector<std::string> stop;
};

std::vector<TokenId> prompt_ids(const GenerateOptions& o, const ModelRuntime& runtime) {
  if (!o.ids.empty()) return parse_token_id_list(o.ids, runtime.model->config().vocab);
  if (o.chat) {
    std::vector<ChatMessage> messages;
    if (!o.system.empty()) messages.push_back({"system", o.system});
    messages.push_back({"user", o.prompt});
    return runtime.require_tokenizer().encode(runtime.require_chat().render(messages));
  }
  return runtime.require_tokenizer().encode(o.prompt);
}

void run_generate(const GenerateOptions& o) {
  if (o.prompt.empty() == o.ids.empty()) fail(ErrorKind::kUsage, "give exactly one of -p/--prompt and --ids");
  if (o.chat && !o.ids.empty()) fail(ErrorKind::kUsage, "--chat applies to a text prompt, not to --ids");
  const auto load_start = Clock::now();
  const auto runtime = ModelRuntime::load(o.model, o.threads ? o.threads : default_thread_count());
  const double load_s = std::chrono::duration<double>(Clock::now() - load_start).count();
  GenerationRequest request;
  request.prompt = prompt_ids(o, runtime);
  request.max_tokens = o.max_tokens;
  request.sampling = {o.temperature, o.top_p, o.top_k, o.seed};
  request.stop_tokens = runtime.stop_tokens;
  request.stop_strings = o.stop;
  Batcher batcher(*runtime.model, runtime.tokenizer, 1, o.context);
  const size_t prompt_tokens = request.prompt.size();
  const auto prompt_ids_copy = request.prompt;
  batcher.add(std::move(request));
  std::vector<TokenId> tokens;
  std::string text;
  const char* finish = "length";
  const auto start = Clock::now();
  Clock::time_point first_token;
  while (!batcher.idle()) {
    for (const auto& event : batcher.step()) {
      if (event.finish == FinishReason::kError) throw Error(ErrorKind::kBadInput, event.error);
      if (tokens.empty()) first_token = Clock::now();
      tokens.push_back(event.token);
      text += event.text;
      if (!o.json) {
        fmt::print("{}", event.text);
        std::fflush(stdout);
      }
      if (event.finish != FinishReason::kNone) finish = finish_reason_name(event.finish);
    }
  }
  const auto end = Clock::now();
  const double prompt_s = std::chrono::duration<double>(first_token - start).count();
  const double decode_s = std::chrono::duration<double>(end - first_token).count();
  const double decode_rate = tokens.size() > 1 && decode_s > 0 ? static_cast<double>(tokens.size() - 1) / decode_s : 0;
  if (o.json) {
    const nlohmann::json out = {{"prompt_ids", prompt_ids_copy}, {"ids", tokens},   {"text", text},
                                {"finish_reason", finish},       {"prompt_tokens", prompt_tokens},
                                {"completion_tokens", tokens.size()}, {"prompt_seconds", prompt_s},
                                {"decode_tokens_per_second", decode_rate}};
    fmt::print("{}\n", out.dump());
    return;
  }
  fmt::print("\n");
  fmt::print(stderr, "[{} prompt tokens in {:.2f} s ({:.1f} tok/s); {} tokens generated at {:.1f} tok/s; finish: {}; load {:.2f} s]\n",
             prompt_tokens, prompt_s, prompt_s > 0 ? static_cast<double>(prompt_tokens) / prompt_s : 0.0,
             tokens.size(), decode_rate, finish, load_s);
}

}  // namespace

void add_generate_commands(CLI::App& app, int& exit_code) {
  auto tok = std::make_shared<TokenizeOptions>();
  auto* t = app.add_subcommand("tokenize", "Turn text into token ids (or ids back into text) with a model's tokenizer");
  t->add_option("model", tok->model, "Model folder or tokenizer.json")->required();
  t->add_option("text", tok->text, "Text to encode (with --decode: ids, comma or space separated)")->required();
  t->add_flag("--decode", tok->decode, "Decode ids into text instead");
  t->add_flag("--json", tok->json, "Print {ids, pieces} / {ids, text} as JSON");
  t->footer(
      "Examples:\n"
      "  rvec tokenize Qwen2.5-0.5B-Instruct '日本語のテキスト'\n"
      "  rvec tokenize Qwen2.5-0.5B-Instruct --decode '101059,102819'\n"
      "Special tokens such as <|im_start|> in the text are recognised as themselves.");
  t->callback([tok, &exit_code] {
    run_tokenize(*tok);
    exit_code = 0;
  });

  auto gen = std::make_shared<GenerateOptions>();
  auto* g = app.add_subcommand("generate", "Generate text from a Qwen2/Llama model on the CPU, streaming to the terminal");
  g->add_option("model", gen->model, "Hugging Face model folder, or a .gguf file")->required();
  g->add_option("-p,--prompt", gen->prompt, "Prompt text");
  g->add_option("--ids", gen->ids, "Prompt as token ids instead (comma or space separated)");
  g->add_flag("--chat", gen->chat, "Wrap the prompt in the model's chat template (ChatML) as a user turn");
  g->add_option("--system", gen->system, "System message for --chat");
  g->add_option("-n,--max-tokens", gen->max_tokens, "Most tokens to generate")->capture_default_str();
  g->add_option("--temperature", gen->temperature, "0 = greedy")->capture_default_str();
  g->add_option("--top-p", gen->top_p, "Nucleus sampling mass")->capture_default_str();
  g->add_option("--top-k", gen->top_k, "Keep the k most likely tokens (0 = all)")->capture_default_str();
  g->add_option("--seed", gen->seed, "Sampling seed (same seed, same tokens)")->capture_default_str();
  g->add_option("--stop", gen->stop, "Stop when this text appears (repeatable; not included in the output)");
  g->add_option("--threads", gen->threads, "Worker threads (default: every core)");
  g->add_option("--context", gen->context, "Context length cap in tokens")->capture_default_str();
  g->add_flag("--json", gen->json, "Print {prompt_ids, ids, text, finish_reason, ...} as JSON instead of streaming");
  g->footer(
      "Examples:\n"
      "  rvec generate Qwen2.5-0.5B-Instruct --chat -p '2+3は？' -n 64\n"
      "  rvec generate stories260K --ids 1 -n 50 --json\n"
      "Text streams to stdout as it is decoded; timing goes to stderr at the end.");
  g->callback([gen, &exit_code] {
    run_generate(*gen);
    exit_code = 0;
  });

  auto serve = std::make_shared<ServerOptions>();
  auto* s = app.add_subcommand("serve", "Serve a model over the OpenAI HTTP API (chat and text completions)");
  s->add_option("model", serve->model_path, "Hugging Face model folder, or a .gguf file")->required();
  s->add_option("--host", serve->host, "Address to bind (loopback by default)")->capture_default_str();
  s->add_option("--port", serve->port, "Port (0 picks a free one and prints it)")->capture_default_str();
  s->add_option("--served-model-name", serve->served_name, "Model name clients send (default: the folder's name)");
  s->add_option("--max-batch", serve->max_batch, "Most sequences decoded together")->capture_default_str();
  s->add_option("--context", serve->max_context, "Context length cap in tokens")->capture_default_str();
  s->add_option("--threads", serve->threads, "Worker threads (default: every core)");
  s->add_option("--max-connections", serve->max_connections,
                "Connections open at once (one thread each); one more is answered 503")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1} << 16));
  s->add_option("--allowed-origins", serve->allowed_origins,
                "Browser origins allowed to call the server (CORS), e.g. https://example.org, or * for any "
                "(default: none)")
      ->delimiter(',');
  s->footer(
      "Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /v1/models/{id}, GET /health.\n"
      "Example:\n"
      "  rvec serve Qwen2.5-0.5B-Instruct --port 8000 &\n"
      "  curl -s localhost:8000/v1/chat/completions -d '{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'\n"
      "Stops cleanly on Ctrl-C or SIGTERM.");
  s->callback([serve, &exit_code] { exit_code = run_server(*serve); });
}

}  // namespace rvec::cli
