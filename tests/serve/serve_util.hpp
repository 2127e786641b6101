// A live `rvec serve` for tests: a tiny chat model folder, the server
// process on a free port, and a libcurl helper.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <sys/types.h>

namespace rvec::test {

struct HttpResult {
  long status = 0;
  std::string body;
};
// GET, or POST when `body` is non-empty or `post`.
HttpResult http(const std::string& url, const std::string& body = "", bool post = false);

// A tiny random Qwen2 model (vocab 300) with a byte-level tokenizer and a ChatML template;
// `seed` picks the weights (same shapes for every seed, so any two can be merged).
void write_chat_model(const std::filesystem::path& dir, uint64_t seed = 1);

// `rvec serve MODEL --port 0` as a child process, stderr in `log`; killed on destruction.
class ServerProcess {
 public:
  ServerProcess(const std::filesystem::path& model, const std::filesystem::path& log, const std::string& env = "");
  ~ServerProcess();
  const std::string& url() const { return base_; }
  bool wait_ready() const;
  int terminate();  // SIGTERM; returns the exit status

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  std::string base_;
};

}  // namespace rvec::test
