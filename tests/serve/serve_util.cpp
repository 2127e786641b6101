#include "serve/serve_util.hpp"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <stdexcept>
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

RawConnection::RawConnection(const std::string& base_url) {
  const std::regex address(R"(http://127\.0\.0\.1:(\d+))");
  std::smatch m;
  if (!std::regex_match(base_url, m, address)) return;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(std::stoi(m[1])));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ >= 0 && connect(fd_, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) {
    close(fd_);
    fd_ = -1;
  }
}

uint16_t RawConnection::local_port() const {
  sockaddr_in self{};
  socklen_t length = sizeof self;
  if (fd_ < 0 || getsockname(fd_, reinterpret_cast<sockaddr*>(&self), &length) != 0) return 0;
  return ntohs(self.sin_port);
}

RawConnection::~RawConnection() {
  if (fd_ >= 0) close(fd_);
}

bool RawConnection::send(const std::string& bytes) {
  size_t sent = 0;
  while (fd_ >= 0 && sent < bytes.size()) {
    const ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return fd_ >= 0;
}

HttpResult RawConnection::read_response(std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  std::string data;
  size_t header_end = std::string::npos;
  size_t want = std::string::npos;  // bytes of headers and body together
  while (fd_ >= 0 && data.size() < want) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    pollfd p{fd_, POLLIN, 0};
    if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) return {};
    char buffer[65536];
    const ssize_t n = recv(fd_, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    data.append(buffer, static_cast<size_t>(n));
    if (header_end == std::string::npos && (header_end = data.find("\r\n\r\n")) != std::string::npos) {
      std::smatch m;
      const std::string headers = data.substr(0, header_end);
      const bool has_length = std::regex_search(headers, m, std::regex(R"(\r\nContent-Length: (\d+))", std::regex::icase));
      want = has_length ? header_end + 4 + std::stoul(m[1]) : std::string::npos;
    }
  }
  HttpResult result;
  if (header_end == std::string::npos || data.rfind("HTTP/1.1 ", 0) != 0) return result;
  result.status = std::stol(data.substr(9, 3));
  result.headers = data.substr(0, header_end);
  result.body = data.substr(header_end + 4, want == std::string::npos ? std::string::npos : want - header_end - 4);
  return result;
}

std::string post_request(const std::string& path, const std::string& body) {
  return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

std::string error_message(const HttpResult& result) {
  const auto body = nlohmann::json::parse(result.body, nullptr, false);
  if (!body.is_object() || !body.contains("error") || !body["error"]["message"].is_string()) return "";
  return body["error"]["message"].get<std::string>();
}

HttpResult raw_http(const std::string& base_url, const std::string& request) {
  RawConnection connection(base_url);
  connection.send(request);
  return connection.read_response();
}

namespace {
// Process `pid`'s socket `fd`, duplicated into this process (-1 when refused).
int borrow_socket(int pidfd, int fd) { return static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, fd, 0)); }

uint16_t peer_port_of(int socket) {
  sockaddr_in peer{};
  socklen_t length = sizeof peer;
  if (getpeername(socket, reinterpret_cast<sockaddr*>(&peer), &length) != 0 || peer.sin_family != AF_INET) return 0;
  return ntohs(peer.sin_port);
}
}  // namespace

PeerSocket peer_socket(pid_t pid, uint16_t peer_port) {
  PeerSocket found;
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) return found;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", error)) {
    const std::string target = fs::read_symlink(entry.path(), error).string();
    if (target.rfind("socket:", 0) != 0) continue;
    const int socket = borrow_socket(pidfd, std::stoi(entry.path().filename().string()));
    if (socket < 0) continue;
    found.inspected = true;
    if (peer_port_of(socket) == peer_port) {
      int on = 0;
      socklen_t length = sizeof on;
      if (getsockopt(socket, IPPROTO_TCP, TCP_NODELAY, &on, &length) == 0) found.nodelay = on != 0;
    }
    close(socket);
    if (found.nodelay) break;
  }
  close(pidfd);
  return found;
}

long resident_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// A tiny Qwen2 model with a byte-level tokenizer and a ChatML template.
void write_chat_model(const fs::path& dir, uint64_t seed, size_t rows) {
  TinyModelSpec spec;
  spec.vocab = rows;
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

LocalHttpServer::LocalHttpServer(const std::function<void(httplib::Server&)>& add_routes) {
  add_routes(server_);
  port_ = server_.bind_to_any_port("127.0.0.1");
  if (port_ < 0) throw std::runtime_error("LocalHttpServer: cannot bind a port on 127.0.0.1");
  thread_ = std::thread([this] { server_.listen_after_bind(); });
  while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

LocalHttpServer::~LocalHttpServer() {
  server_.stop();
  thread_.join();
}

ServerProcess::ServerProcess(const fs::path& model, const fs::path& log, const std::string& env,
                             const std::string& flags) {
  const std::string command = env + " exec " RVEC_CLI_PATH " serve " + model.string() +
                              " --port 0 --threads 2 --served-model-name tiny " + flags + " 2>" + log.string();
  std::ofstream(log, std::ios::trunc);  // so an earlier server's "listening on" in a reused log is not read as this one's
  pid_ = fork();
  if (pid_ == 0) {
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  const std::regex listening(R"(listening on (http://127\.0\.0\.1:\d+))");
  for (int i = 0; i < 3000 && base_.empty(); ++i) {  // up to 30 s: a loaded machine under ASan starts slowly
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

namespace {
const fs::path& with_model(const TempDir& dir) {
  write_chat_model(dir.path() / "model");
  return dir.path();
}
}  // namespace

TinyServer::TinyServer(const std::string& flags, const std::string& env)
    : process_(with_model(dir_) / "model", dir_.path() / "serve.log", env, flags) {
  ready_ = !process_.url().empty() && process_.wait_ready();
}

std::string TinyServer::log() const { return read_file(dir_.path() / "serve.log"); }

}  // namespace rvec::test
