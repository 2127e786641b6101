#include "serve/serve_util.hpp"

#include <curl/curl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "engine/tiny_model.hpp"
#include "test_util.hpp"
#include "text/tokenizer.hpp"

namespace rvec::test {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {
size_t collect(char* data, size_t size, size_t count, void* out) {
  static_cast<std::string*>(out)->append(data, size * count);
  return size * count;
}
}  // namespace

HttpResult http(const std::string& url, const std::string& body, bool post) {
  HttpResult result;
  CURL* curl = curl_easy_init();
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &result.body);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 120L);
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  if (post || !body.empty()) {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  }
  if (curl_easy_perform(curl) == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &result.status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return result;
}

// A tiny Qwen2 model with a byte-level tokenizer and a ChatML template.
void write_chat_model(const fs::path& dir, uint64_t seed) {
  TinyModelSpec spec;
  spec.vocab = 300;
  spec.hidden = 32;
  spec.seed = seed;
  write_tiny_model(dir, spec);
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_level_symbol(static_cast<uint8_t>(b))] = b;
  vocab["he"] = 256;
  const json added = json::array({{{"id", 297}, {"content", "<|endoftext|>"}, {"special", true}},
                                  {{"id", 298}, {"content", "<|im_start|>"}, {"special", true}},
                                  {{"id", 299}, {"content", "<|im_end|>"}, {"special", true}}});
  const json tokenizer = {
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"h e"}}}},
      {"added_tokens", added},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}}};
  std::ofstream(dir / "tokenizer.json") << tokenizer.dump();
  const json config = {{"chat_template",
                        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
                        "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"},
                       {"eos_token", "<|im_end|>"}};
  std::ofstream(dir / "tokenizer_config.json") << config.dump();
}

ServerProcess::ServerProcess(const fs::path& model, const fs::path& log, const std::string& env) {
  const std::string command = env + " exec " RVEC_CLI_PATH " serve " + model.string() +
                              " --port 0 --threads 2 --served-model-name tiny 2>" + log.string();
  pid_ = fork();
  if (pid_ == 0) {
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  const std::regex listening(R"(listening on (http://127\.0\.0\.1:\d+))");
  for (int i = 0; i < 500 && base_.empty(); ++i) {
    std::smatch m;
    const auto text = read_file(log);
    if (std::regex_search(text, m, listening)) base_ = m[1];
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0 && !exited_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

bool ServerProcess::wait_ready() const {
  for (int i = 0; i < 1000; ++i) {
    if (http(base_ + "/health").status == 200) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

int ServerProcess::terminate() {
  kill(pid_, SIGTERM);
  int status = 0;
  waitpid(pid_, &status, 0);
  exited_ = true;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace rvec::test
