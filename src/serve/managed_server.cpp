#include "serve/managed_server.hpp"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "base/error.hpp"
#include "base/regular_file.hpp"

namespace rvec {
namespace {

// The process groups of the servers running now (a sweep may run several at
// once). A fixed array of atomics, so the signal handler can read it safely.
std::array<std::atomic<pid_t>, 64> g_running_groups;

void register_group(pid_t group) {
  for (auto& slot : g_running_groups) {
    pid_t empty = 0;
    if (slot.compare_exchange_strong(empty, group)) return;
  }
}

void unregister_group(pid_t group) {
  for (auto& slot : g_running_groups) {
    pid_t expected = group;
    if (slot.compare_exchange_strong(expected, 0)) return;
  }
}

// Up to 1 s for the members of a killed group to be gone (a killed process
// lingers until the kernel has torn it down and its parent has reaped it).
void wait_until_gone(pid_t group) {
  for (int i = 0; i < 100 && kill(-group, 0) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

// Keeps at most 1 MiB of a body (a model list is a few hundred bytes); a
// longer one ends the transfer, which then counts as no answer.
size_t append_body(char* data, size_t size, size_t count, void* body) {
  constexpr size_t kMaxBody = size_t{1} << 20;
  auto& text = *static_cast<std::string*>(body);
  if (text.size() + size * count > kMaxBody) return 0;
  text.append(data, size * count);
  return size * count;
}

// Binds port 0 on 127.0.0.1 and returns the port the kernel chose.
int ephemeral_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) fail_errno("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    fail_errno("binding a free port");
  }
  close(fd);
  return ntohs(addr.sin_port);
}

// Sends `signal` to every running group; true if one still had a member.
bool signal_groups(int signal) {
  bool any = false;
  for (const auto& slot : g_running_groups) {
    const pid_t group = slot.load();
    if (group <= 0) continue;
    while (waitpid(-group, nullptr, WNOHANG) > 0) {  // reap our own exited children
    }
    any = kill(-group, signal) == 0 || any;
  }
  return any;
}

// Ctrl-C or SIGTERM: the servers go first (SIGTERM, then SIGKILL for those
// still there after 2 s), then this process ends with the same signal. Only
// async-signal-safe calls: kill, waitpid, nanosleep.
void on_signal(int signal) {
  constexpr timespec kPoll = {0, 10'000'000};
  signal_groups(SIGTERM);
  for (int i = 0; i < 200 && signal_groups(0); ++i) nanosleep(&kPoll, nullptr);
  signal_groups(SIGKILL);
  for (int i = 0; i < 100 && signal_groups(0); ++i) nanosleep(&kPoll, nullptr);
  ::signal(signal, SIG_DFL);
  raise(signal);
}

// A server that has /health says there whether its model is loaded (rvec
// serve and llama-server answer 503 while loading, and rvec serve's
// /v1/models already answers then); one without it is ready once
// /v1/models answers.
bool answers_ready(const std::string& base_url) {
  const long health = http_get(base_url + "/health").status;
  return health == 200 || (health == 404 && http_get(base_url + "/v1/models").status == 200);
}

}  // namespace

HttpAnswer http_get(const std::string& url, long timeout_ms) {
  HttpAnswer answer;
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return answer;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer.body);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  if (curl_easy_perform(curl) == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &answer.status);
  curl_easy_cleanup(curl);
  return answer;
}

int free_local_port() {
  static std::mutex mutex;
  static std::unordered_set<int> handed_out;
  const std::lock_guard lock(mutex);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const int port = ephemeral_port();
    if (handed_out.insert(port).second) return port;
  }
  fail(ErrorKind::kIo, "found no free local port that this process has not used before in 1,000 tries");
}

void stop_managed_servers_on_signals() {
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

ManagedServer::ManagedServer(const std::string& command, const std::string& log_path)
    : command_(command), log_(log_path) {
  const FileDescriptor log = open_regular_file(log_path, O_WRONLY | O_CREAT | O_APPEND);
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ < 0) fail_errno("fork");
  if (pid_ == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1);  // the parent died before prctl
    dup2(log.get(), STDOUT_FILENO);
    dup2(log.get(), STDERR_FILENO);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  setpgid(pid_, pid_);
  register_group(pid_);
}

ManagedServer::~ManagedServer() { stop(); }

void ManagedServer::wait_ready(const std::string& base_url, double timeout_s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      unregister_group(pid_);
      pid_ = -1;
      fail(ErrorKind::kIo, "the server command exited ({}) before answering: `{}`; its output is in {}",
           WIFEXITED(status) ? fmt::format("status {}", WEXITSTATUS(status)) : "killed by a signal", command_, log_);
    }
    if (answers_ready(base_url)) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  stop();
  fail(ErrorKind::kIo, "the server did not answer at {} within {:.0f} s: `{}`; its output is in {}", base_url,
       timeout_s, command_, log_);
}

void ManagedServer::stop() {
  if (pid_ <= 0) return;
  kill(-pid_, SIGTERM);
  bool exited = false;
  for (int i = 0; i < 200 && !exited; ++i) {  // up to 20 s to exit cleanly
    exited = waitpid(pid_, nullptr, WNOHANG) == pid_;
    if (!exited) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  kill(-pid_, SIGKILL);  // also anything the server left behind in its group
  if (!exited) waitpid(pid_, nullptr, 0);
  wait_until_gone(pid_);
  unregister_group(pid_);
  pid_ = -1;
}

}  // namespace rvec
