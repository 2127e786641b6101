// A live `rvec serve` for tests: a tiny chat model folder, the server
// process on a free port, and a libcurl helper.
#pragma once

#include <httplib.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include "test_util.hpp"

namespace rvec::test {

struct HttpResult {
  long status = 0;
  std::string body;
  std::string headers;  // the status line and headers (RawConnection only)
};
// GET, or POST when `body` is non-empty or `post`.
HttpResult http(const std::string& url, const std::string& body = "", bool post = false);

// An in-process HTTP server on a free 127.0.0.1 port with the routes
// `add_routes` sets up, listening on its own thread from construction until
// destruction. For fake servers whose answers a test chooses.
class LocalHttpServer {
 public:
  explicit LocalHttpServer(const std::function<void(httplib::Server&)>& add_routes);
  ~LocalHttpServer();
  LocalHttpServer(const LocalHttpServer&) = delete;
  LocalHttpServer& operator=(const LocalHttpServer&) = delete;
  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

// A TCP connection to the server at `base_url` ("http://127.0.0.1:PORT"),
// closed on destruction. For requests curl will not send as they are.
class RawConnection {
 public:
  explicit RawConnection(const std::string& base_url);
  ~RawConnection();
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;
  bool connected() const { return fd_ >= 0; }
  // The connection's own (client-side) port, 0 when not connected.
  uint16_t local_port() const;
  // False once the server has closed the connection.
  bool send(const std::string& bytes);
  // Reads one response (headers and a Content-Length body); status 0 if
  // none came within `timeout`.
  HttpResult read_response(std::chrono::milliseconds timeout = std::chrono::seconds(10));

 private:
  int fd_ = -1;
};

// The raw HTTP/1.1 POST of `body` (JSON) to `path`.
std::string post_request(const std::string& path, const std::string& body);

// The error object's message, or "" when `result` is not an error object.
std::string error_message(const HttpResult& result);

// Sends `request` on a new connection and reads the response.
HttpResult raw_http(const std::string& base_url, const std::string& request);

// The TCP socket of process `pid` whose peer is 127.0.0.1:`peer_port` (the
// server's end of a client's connection): whether the process's sockets
// could be looked at (pidfd_getfd needs the right to ptrace it), and if one
// has that peer, whether TCP_NODELAY is set on it.
struct PeerSocket {
  bool inspected = false;
  std::optional<bool> nodelay;  // none: no socket has that peer
};
PeerSocket peer_socket(pid_t pid, uint16_t peer_port);

// Resident memory of process `pid` in KiB (VmRSS in /proc/PID/status).
long resident_kib(pid_t pid);

// True in the ASan build, whose allocator holds freed memory in quarantine:
// bounds on resident memory do not apply there.
#ifdef __SANITIZE_ADDRESS__
inline constexpr bool kAddressSanitizer = true;
#else
inline constexpr bool kAddressSanitizer = false;
#endif

// A tiny random Qwen2 model (vocab 300) with a byte-level tokenizer and a ChatML template;
// `seed` picks the weights (same shapes for every seed, so any two can be merged).
// `rows` > 300 adds embedding rows no token uses (as padded vocabularies do).
void write_chat_model(const std::filesystem::path& dir, uint64_t seed = 1, size_t rows = 300);

// `rvec serve MODEL --port 0` as a child process, stderr in `log`; killed on destruction.
class ServerProcess {
 public:
  // `flags` are added to the command line, `env` ("NAME=value ...") to its environment.
  ServerProcess(const std::filesystem::path& model, const std::filesystem::path& log, const std::string& env = "",
                const std::string& flags = "");
  ~ServerProcess();
  const std::string& url() const { return base_; }
  pid_t pid() const { return pid_; }
  bool wait_ready() const;
  int terminate();  // SIGTERM; returns the exit status

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  std::string base_;
};

// The tiny chat model (write_chat_model) in a temporary folder, served.
class TinyServer {
 public:
  explicit TinyServer(const std::string& flags = "", const std::string& env = "");
  // True once /health answers 200.
  bool ready() const { return ready_; }
  const std::string& url() const { return process_.url(); }
  pid_t pid() const { return process_.pid(); }
  std::filesystem::path model() const { return dir_.path() / "model"; }
  std::string log() const;

 private:
  TempDir dir_;
  ServerProcess process_;
  bool ready_ = false;
};

}  // namespace rvec::test
