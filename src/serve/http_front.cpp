#include "serve/http_front.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <fmt/format.h>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>

#include "base/error.hpp"
#include "serve/http_error.hpp"
#include "serve/limits.hpp"

namespace rvec {
namespace {

namespace limits = serve_limits;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// ---- threads ----------------------------------------------------------------------

// httplib's task queue for connections: each task (one connection) runs on a
// thread of its own, an idle one or a new one, up to `max_threads`. When all
// of them are busy the task runs through `overflow` on the accepting thread.
class ConnectionThreads final : public httplib::TaskQueue {
 public:
  using Task = std::function<void()>;
  ConnectionThreads(size_t max_threads, std::function<void(Task)> overflow)
      : max_threads_(max_threads), overflow_(std::move(overflow)) {}
  ~ConnectionThreads() override { shutdown(); }

  void enqueue(Task task) override {
    if (!hand_over(task)) overflow_(std::move(task));
  }

  // Runs what is queued, then joins every thread.
  void shutdown() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& thread : threads_) thread.join();
    threads_.clear();
  }

 private:
  // Queues `task` for an idle thread or a new one; false when there is none.
  bool hand_over(Task& task) {
    std::lock_guard lock(mutex_);
    if (tasks_.size() < idle_) {
      tasks_.push_back(std::move(task));
      wake_.notify_one();
      return true;
    }
    if (threads_.size() >= max_threads_) return false;
    try {
      threads_.emplace_back([this] { work(); });
    } catch (const std::system_error&) {  // the system has no more threads to give
      return false;
    }
    tasks_.push_back(std::move(task));
    return true;
  }

  void work() {
    std::unique_lock lock(mutex_);
    while (true) {
      ++idle_;
      wake_.wait(lock, [&] { return stopping_ || !tasks_.empty(); });
      --idle_;
      if (tasks_.empty()) return;
      Task task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      task();
      lock.lock();
    }
  }

  const size_t max_threads_;
  const std::function<void(Task)> overflow_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Task> tasks_;
  std::vector<std::thread> threads_;
  size_t idle_ = 0;
  bool stopping_ = false;
};

// True while the accepting thread runs a connection it has no thread for.
thread_local bool t_over_connection_limit = false;

// ---- one connection ---------------------------------------------------------------

// Why a connection stopped reading.
enum class Fault {
  kNone,
  kIdle,               // no byte for kIdleTimeout in the middle of a request
  kDeadline,           // the request took longer than kRequestDeadline to arrive
  kHeadersTooLarge,    // request line and headers over kMaxHeaderBytes
  kBodyTooLarge,       // body over its budget
  kStopping,           // the server is stopping
  kBroken,             // the socket failed
};

int wait_for(int fd, short events, int stop_fd, Clock::duration timeout) {
  pollfd fds[2] = {{fd, events, 0}, {stop_fd, POLLIN, 0}};
  const int count = stop_fd >= 0 ? 2 : 1;
  const auto until = Clock::now() + timeout;
  while (true) {
    const auto left = std::chrono::duration_cast<milliseconds>(until - Clock::now()).count();
    const int ready = ::poll(fds, count, static_cast<int>(std::max<int64_t>(0, left)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready > 0 && count == 2 && (fds[1].revents & POLLIN)) return -2;  // stopping
    return ready;
  }
}

// A socket as httplib's Stream, with the request limits enforced. Lives for
// the whole connection (so pipelined bytes are kept between requests); each
// request starts with begin_request(). Used by one thread.
class Connection final : public httplib::Stream {
 public:
  Connection(int fd, int stop_fd) : fd_(fd), stop_fd_(stop_fd) {}

  // Waits up to kIdleTimeout for the next request; true when bytes (or the
  // end of the stream) arrived.
  bool wait_for_request() {
    if (begin_ < end_) return true;
    return wait_for(fd_, POLLIN, stop_fd_, limits::kIdleTimeout) > 0;
  }
  void begin_request() {
    deadline_ = Clock::now() + limits::kRequestDeadline;
    phase_ = Phase::kHeaders;
    budget_ = limits::kMaxHeaderBytes;
    consumed_ = 0;
    written_ = 0;
    fault_ = Fault::kNone;
  }
  // The headers were read; at most `bytes` more belong to this request.
  void begin_body(size_t bytes) {
    phase_ = Phase::kBody;
    budget_ = consumed_ + bytes;
  }
  bool reading_headers() const { return phase_ == Phase::kHeaders; }
  Fault fault() const { return fault_; }
  size_t request_bytes() const { return consumed_; }
  bool wrote_response() const { return written_ > 0; }
  // Close after this response, reading what the client still sends for a
  // while so that it sees the response rather than a reset.
  void close_after_response() { closing_ = true; }
  bool closing() const { return closing_; }

  void close() {
    if (closing_) linger();
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
  }

  bool is_readable() const override {
    return begin_ < end_ || wait_for(fd_, POLLIN, stop_fd_, limits::kIdleTimeout) > 0;
  }
  bool is_writable() const override {
    return wait_for(fd_, POLLOUT, -1, limits::kWriteTimeout) > 0 && peer_open();
  }

  ssize_t read(char* out, size_t size) override {
    if (consumed_ >= budget_) {
      fault_ = phase_ == Phase::kHeaders ? Fault::kHeadersTooLarge : Fault::kBodyTooLarge;
      return -1;
    }
    if (begin_ == end_ && !fill()) return fault_ == Fault::kNone ? 0 : -1;
    const size_t n = std::min({size, end_ - begin_, budget_ - consumed_});
    std::copy_n(buffer_ + begin_, n, out);
    begin_ += n;
    consumed_ += n;
    return static_cast<ssize_t>(n);
  }

  bool write_all(std::string_view data) { return flush() && send_all(data); }

  // The first write of a response (httplib's status line and headers) is
  // held and goes out with the next one (the body, or the first chunk of a
  // stream) in one send; flush() sends it on its own, before the connection
  // waits for input and once the request is answered.
  ssize_t write(const char* data, size_t size) override {
    if (written_ == 0 && size <= kMaxHeldBytes) {
      held_.assign(data, size);
      written_ = size;
      return static_cast<ssize_t>(size);
    }
    if (!held_.empty()) {
      held_.append(data, size);
      const bool sent = send_all(held_);
      held_.clear();
      return sent ? static_cast<ssize_t>(size) : -1;
    }
    return send_some(data, size);
  }

  // Sends what write() holds back; false if the socket failed.
  bool flush() {
    const bool sent = send_all(held_);
    held_.clear();
    return sent;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override { address(getpeername, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { address(getsockname, ip, port); }
  socket_t socket() const override { return fd_; }

 private:
  enum class Phase { kHeaders, kBody };
  static constexpr size_t kMaxHeldBytes = 16384;

  ssize_t send_some(const char* data, size_t size) {
    while (true) {
      if (wait_for(fd_, POLLOUT, -1, limits::kWriteTimeout) <= 0) return -1;
      const ssize_t n = ::send(fd_, data, size, MSG_NOSIGNAL);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n > 0) written_ += static_cast<size_t>(n);
      return n;
    }
  }
  bool send_all(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = send_some(data.data(), data.size());
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads what the socket has into the buffer; false at the end of the
  // stream (fault_ kNone) or on a fault.
  bool fill() {
    begin_ = end_ = 0;
    if (!flush()) return failed(Fault::kBroken);  // e.g. a 100 Continue the client waits for
    while (true) {
      const auto left = deadline_ - Clock::now();
      if (left <= Clock::duration::zero()) return failed(Fault::kDeadline);
      const int ready = wait_for(fd_, POLLIN, stop_fd_, std::min<Clock::duration>(left, limits::kIdleTimeout));
      if (ready == -2) return failed(Fault::kStopping);
      if (ready == 0) return failed(Clock::now() >= deadline_ ? Fault::kDeadline : Fault::kIdle);
      if (ready < 0) return failed(Fault::kBroken);
      const ssize_t n = ::recv(fd_, buffer_, sizeof buffer_, 0);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n < 0) return failed(Fault::kBroken);
      end_ = static_cast<size_t>(n);
      return n > 0;
    }
  }
  bool failed(Fault fault) {
    fault_ = fault;
    return false;
  }

  // False once the client closed its side (it will read no response).
  bool peer_open() const {
    if (begin_ < end_ || wait_for(fd_, POLLIN, -1, Clock::duration::zero()) == 0) return true;
    char byte;
    const ssize_t n = ::recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR));
  }

  // Sends our FIN, then discards what the client sends until it closes too,
  // kLingerTime has passed or the server stops.
  void linger() {
    ::shutdown(fd_, SHUT_WR);
    const auto until = Clock::now() + limits::kLingerTime;
    char scratch[16384];
    while (Clock::now() < until && wait_for(fd_, POLLIN, stop_fd_, until - Clock::now()) > 0) {
      if (::recv(fd_, scratch, sizeof scratch, 0) <= 0) break;
    }
  }

  template <typename Lookup>
  void address(Lookup lookup, std::string& ip, int& port) const {
    sockaddr_storage storage{};
    socklen_t length = sizeof storage;
    ip.clear();
    port = 0;
    if (lookup(fd_, reinterpret_cast<sockaddr*>(&storage), &length) != 0) return;
    char text[INET6_ADDRSTRLEN] = {};
    if (storage.ss_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(&storage);
      inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
      port = ntohs(in->sin_port);
    } else if (storage.ss_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage);
      inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
      port = ntohs(in6->sin6_port);
    }
    ip = text;
  }

  const int fd_;
  const int stop_fd_;
  char buffer_[4096];
  size_t begin_ = 0, end_ = 0;  // unread bytes in buffer_
  Clock::time_point deadline_;
  Phase phase_ = Phase::kHeaders;
  size_t budget_ = 0, consumed_ = 0;  // bytes this request may take / took
  size_t written_ = 0;                // bytes of this request's response, held or sent
  std::string held_;                  // written but not yet sent (see write())
  Fault fault_ = Fault::kNone;
  bool closing_ = false;
};

// The connection the calling thread serves (httplib's handlers get only the request).
thread_local Connection* t_connection = nullptr;

// ---- error responses --------------------------------------------------------------

void send_error(httplib::Response& res, const HttpError& error) {
  res.status = error.status;
  res.set_content(json_text(error_body(error)), "application/json");
}

// Runs a handler; an HttpError it throws becomes the response.
template <typename Handler>
void answer(httplib::Response& res, Handler handler) {
  try {
    handler();
  } catch (const HttpError& error) {
    send_error(res, error);
  }
  if (t_connection && t_connection->closing()) res.set_header("Connection", "close");
}

const char* reason_phrase(int status) {
  switch (status) {
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

// A whole HTTP response for `error`, for when httplib has no request to answer.
std::string raw_response(const HttpError& error) {
  const std::string body = json_text(error_body(error));
  return fmt::format("HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                     error.status, reason_phrase(error.status), body.size(), body);
}

std::string seconds(std::chrono::seconds s) { return fmt::format("{} s", s.count()); }

// What a fault while reading a request means to the client.
HttpError fault_error(Fault fault, size_t max_body_bytes) {
  switch (fault) {
    case Fault::kIdle:
      return {408, fmt::format("the client sent nothing for {} in the middle of its request", seconds(limits::kIdleTimeout))};
    case Fault::kDeadline:
      return {408, fmt::format("the request did not arrive in full within {}", seconds(limits::kRequestDeadline))};
    case Fault::kHeadersTooLarge:
      return {431, fmt::format("the request line and headers are longer than {} bytes", limits::kMaxHeaderBytes)};
    case Fault::kBodyTooLarge:
      return {413, fmt::format("the request body is larger than {} bytes, this server's limit", max_body_bytes)};
    case Fault::kStopping: return {503, "the server is shutting down"};
    case Fault::kNone:
    case Fault::kBroken: break;
  }
  return {400, "the request could not be read"};
}

// The error for a connection the server has no room for, sent without
// blocking the accepting thread.
void refuse_connection(int fd, size_t max_connections) {
  const std::string response = raw_response(
      {503, fmt::format("the server has {} connections open, its limit; try again later", max_connections)});
  [[maybe_unused]] const auto sent = ::send(fd, response.data(), response.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  ::shutdown(fd, SHUT_WR);
  char scratch[4096];
  while (::recv(fd, scratch, sizeof scratch, MSG_DONTWAIT) > 0) {
  }
  ::close(fd);
}

// ---- request framing --------------------------------------------------------------

// Content-Length as a number; nullopt if it is not one. Lengths over
// UINT64_MAX come back as UINT64_MAX (over every limit).
std::optional<uint64_t> content_length(const std::string& text) {
  if (text.empty() || text.size() > 64 || !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  uint64_t value = 0;
  for (const char c : text) {
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return UINT64_MAX;
    value = value * 10 + digit;
  }
  return value;
}

std::string shown_header(const std::string& value) {
  constexpr size_t kMax = 40;
  return valid_utf8(value.size() <= kMax ? value : value.substr(0, kMax) + "...");
}

bool equal_ignoring_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// Responses are always whole; HTTP allows a server to ignore Range. (The
// request is process_request's own object, handed to the handlers as const.)
void answer_whole(const httplib::Request& req) { const_cast<httplib::Request&>(req).ranges.clear(); }

}  // namespace

HttpFront::HttpFront(size_t max_connections, size_t max_body_bytes)
    : max_connections_(max_connections), max_body_bytes_(max_body_bytes) {
  if (::pipe2(stop_pipe_, O_CLOEXEC) != 0) fail_errno("pipe");
  new_task_queue = [this] {
    return new ConnectionThreads(max_connections_, [](ConnectionThreads::Task task) {
      t_over_connection_limit = true;
      task();
      t_over_connection_limit = false;
    });
  };
  set_payload_max_length(max_body_bytes_);
  set_keep_alive_max_count(limits::kKeepAliveRequests);
  set_keep_alive_timeout(limits::kIdleTimeout.count());
  set_read_timeout(limits::kIdleTimeout);
  set_write_timeout(limits::kWriteTimeout);
  set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    answer_whole(req);
    allow_origin(req, res);
    if (req.method == "OPTIONS") return answer_preflight(req, res);
    return check_framing(req, res);
  });
  set_expect_100_continue_handler([this](const httplib::Request& req, httplib::Response& res) {
    return check_framing(req, res) == HandlerResponse::Handled ? res.status : 100;
  });
  // Handled even when the body is a handler's own error object: that makes
  // httplib add the Content-Length header on every path.
  set_error_handler(HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
    answer_whole(req);  // errors answered before routing too (an Expect: 100-continue refusal)
    if (res.body.empty()) describe_error(req, res);
    return HandlerResponse::Handled;
  }));
  set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr exception) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(exception);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, {500, "internal error: " + valid_utf8(what)});
  });
}

HttpFront::~HttpFront() {
  ::close(stop_pipe_[0]);
  ::close(stop_pipe_[1]);
}

void HttpFront::route(const std::string& method, const std::string& path, Handler handler) {
  const std::string pattern = std::regex_replace(path, std::regex(R"(\{id\})"), "(.+)");
  endpoints_.push_back({method, path, std::regex(pattern)});
  if (method == "GET") {
    Get(pattern, [handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
      answer(res, [&] { handler(req, req.body, res); });
    });
  } else {  // read through a ContentReader: no form decoding, and the size checked as it arrives
    Post(pattern, [this, handler = std::move(handler)](const httplib::Request& req, httplib::Response& res,
                                                     const httplib::ContentReader& reader) {
      answer(res, [&] { handler(req, read_body(reader), res); });
    });
  }
}

std::string HttpFront::read_body(const httplib::ContentReader& reader) const {
  std::string body;
  bool too_large = false;
  const bool complete = reader([&](const char* data, size_t size) {
    too_large = size > max_body_bytes_ - body.size();
    if (!too_large) body.append(data, size);
    return !too_large;
  });
  if (complete) return body;
  if (t_connection) t_connection->close_after_response();  // the rest of the body is unread
  if (too_large) refuse(fmt::format("the request body has more than {} bytes, this server's limit", max_body_bytes_), "", 413);
  const Fault fault = t_connection ? t_connection->fault() : Fault::kNone;
  if (fault != Fault::kNone && fault != Fault::kBroken) throw fault_error(fault, max_body_bytes_);
  refuse("the request body is shorter than its Content-Length, or its chunked encoding is malformed");
}

int HttpFront::bind(const std::string& host, int port) {
  const int bound = port == 0 ? bind_to_any_port(host) : (bind_to_port(host, port) ? port : -1);
  // httplib listens with a backlog of 5, so a burst of new connections would
  // wait for SYN retransmits (1 s, 3 s, ...); listening again raises it.
  if (bound >= 0 && ::listen(svr_sock_, static_cast<int>(limits::kListenBacklog)) != 0) return -1;
  return bound;
}

void HttpFront::stop() {
  if (!stopping_.exchange(true)) {
    [[maybe_unused]] const auto n = ::write(stop_pipe_[1], "x", 1);
  }
  httplib::Server::stop();
}

bool HttpFront::process_and_close_socket(socket_t sock) {
  if (t_over_connection_limit) {
    refuse_connection(sock, max_connections_);
  } else {
    serve_connection(sock);
  }
  return true;
}

void HttpFront::serve_connection(int fd) {
  // Responses go out as soon as they are written: without this, Nagle's
  // algorithm and the client's delayed ACK hold a response's second write
  // for 40 ms on a reused connection.
  const int on = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  Connection connection(fd, stop_pipe_[0]);
  t_connection = &connection;
  for (size_t served = 0; served < limits::kKeepAliveRequests && !stopping_; ++served) {
    if (!connection.wait_for_request()) break;
    connection.begin_request();
    bool client_closes = false;
    bool answered = false;
    try {
      answered = process_request(connection, served + 1 == limits::kKeepAliveRequests, client_closes, nullptr);
    } catch (const std::exception& e) {  // httplib's own code threw: drop the connection, keep serving
      ++internal_errors_;
      fmt::print(stderr, "rvec serve: internal error while answering a request: {}\n", e.what());
    } catch (...) {
      ++internal_errors_;
      fmt::print(stderr, "rvec serve: internal error while answering a request\n");
    }
    connection.flush();
    if (connection.request_bytes() >= limits::kTrimAfterRequestBytes) malloc_trim(0);
    const Fault fault = connection.fault();
    if (!connection.wrote_response() && fault != Fault::kNone && fault != Fault::kBroken && fault != Fault::kStopping) {
      connection.write_all(raw_response(fault_error(fault, max_body_bytes_)));
      connection.close_after_response();
    }
    if (!answered || client_closes || connection.closing() || fault != Fault::kNone) break;
  }
  t_connection = nullptr;
  connection.close();
}

// Checks how the body is framed before any of it is read; refuses (and
// closes the connection after the answer) what the server cannot take.
httplib::Server::HandlerResponse HttpFront::check_framing(const httplib::Request& req, httplib::Response& res) const {
  const auto refuse_here = [&](int status, std::string message) {
    send_error(res, {status, std::move(message)});
    res.set_header("Connection", "close");
    if (t_connection) t_connection->close_after_response();
    return HandlerResponse::Handled;
  };
  if (req.method != "GET" && req.method != "HEAD" && req.method != "POST") {
    return refuse_here(405, fmt::format("{} is not a method this server accepts (it has {})", shown_header(req.method),
                                        endpoint_list()));
  }
  const std::string encoding = req.get_header_value("Content-Encoding");
  if (!encoding.empty() && !equal_ignoring_case(encoding, "identity")) {
    return refuse_here(415, fmt::format("Content-Encoding `{}` is not supported; send the body uncompressed",
                                        shown_header(encoding)));
  }
  if (req.get_header_value("Content-Type").rfind("multipart/", 0) == 0) {
    return refuse_here(415, "multipart bodies are not supported; send the request as application/json");
  }
  const bool has_length = req.has_header("Content-Length");
  const std::string transfer = req.get_header_value("Transfer-Encoding");
  if (!transfer.empty()) {
    if (!equal_ignoring_case(transfer, "chunked")) {
      return refuse_here(400, fmt::format("Transfer-Encoding `{}` is not supported; send Content-Length or chunked",
                                          shown_header(transfer)));
    }
    if (has_length) return refuse_here(400, "a request may not have both Content-Length and Transfer-Encoding");
    if (t_connection) t_connection->begin_body(2 * max_body_bytes_);  // with chunk framing; read_body() checks the body
    return HandlerResponse::Unhandled;
  }
  if (!has_length) {
    if (req.method == "POST") return refuse_here(411, "a POST request needs a Content-Length header");
    if (t_connection) t_connection->begin_body(0);
    return HandlerResponse::Unhandled;
  }
  const std::string first = req.get_header_value("Content-Length");
  const auto length = content_length(first);
  if (!length) {
    return refuse_here(400, fmt::format("Content-Length must be a number of bytes (got `{}`)", shown_header(first)));
  }
  for (size_t i = 1; i < req.get_header_value_count("Content-Length"); ++i) {
    if (req.get_header_value("Content-Length", i) != first) return refuse_here(400, "the request has two different Content-Length headers");
  }
  if (*length > max_body_bytes_) {
    return refuse_here(413, fmt::format("the request body has {} bytes; this server accepts at most {}",
                                        shown_header(first), max_body_bytes_));
  }
  if (t_connection) t_connection->begin_body(*length);
  return HandlerResponse::Unhandled;
}

const HttpFront::Endpoint* HttpFront::endpoint_at(const std::string& path) const {
  const auto it = std::find_if(endpoints_.begin(), endpoints_.end(),
                               [&](const Endpoint& e) { return std::regex_match(path, e.pattern); });
  return it == endpoints_.end() ? nullptr : &*it;
}

void HttpFront::allow_origin(const httplib::Request& req, httplib::Response& res) const {
  const std::string origin = req.get_header_value("Origin");
  if (origin.empty()) return;
  const bool any = std::find(allowed_origins_.begin(), allowed_origins_.end(), "*") != allowed_origins_.end();
  if (any) {
    res.set_header("Access-Control-Allow-Origin", "*");
  } else if (std::find(allowed_origins_.begin(), allowed_origins_.end(), origin) != allowed_origins_.end()) {
    res.set_header("Access-Control-Allow-Origin", origin);
    res.set_header("Vary", "Origin");
  }
}

// OPTIONS: the methods a path accepts, and for a CORS preflight from an
// allowed origin the permission to send the headers it asks for.
httplib::Server::HandlerResponse HttpFront::answer_preflight(const httplib::Request& req, httplib::Response& res) const {
  if (req.has_header("Content-Length") || req.has_header("Transfer-Encoding")) {  // a body we do not read
    res.set_header("Connection", "close");
    if (t_connection) t_connection->close_after_response();
  } else if (t_connection) {
    t_connection->begin_body(0);
  }
  const Endpoint* endpoint = endpoint_at(req.path);
  if (!endpoint) {
    send_error(res, {404, fmt::format("OPTIONS {} is not an endpoint of this server (it has {})",
                                      shown_header(req.path), endpoint_list())});
    return HandlerResponse::Handled;
  }
  const std::string methods = endpoint->method + ", OPTIONS";
  res.status = 204;
  res.set_header("Allow", methods);
  if (res.has_header("Access-Control-Allow-Origin")) {
    res.set_header("Access-Control-Allow-Methods", methods);
    const std::string asked = req.get_header_value("Access-Control-Request-Headers");
    res.set_header("Access-Control-Allow-Headers", asked.empty() ? "Authorization, Content-Type" : asked);
    res.set_header("Access-Control-Max-Age", "600");
  }
  return HandlerResponse::Handled;
}

std::string HttpFront::endpoint_list() const {
  std::string list;
  for (const auto& endpoint : endpoints_) list += (list.empty() ? "" : ", ") + endpoint.method + " " + endpoint.path;
  return list;
}

// Fills in the error object for an error httplib found (a handler's own
// errors already have one).
void HttpFront::describe_error(const httplib::Request& req, httplib::Response& res) const {
  const Connection* connection = t_connection;
  const Fault fault = connection ? connection->fault() : Fault::kNone;
  HttpError error{res.status, ""};
  if (res.status == 404) {
    const std::string target = shown_header(req.method) + " " + shown_header(req.path);
    const Endpoint* same_path = endpoint_at(req.path);
    if (same_path) {
      error = {405, fmt::format("{}: {} accepts {} only", target, same_path->path, same_path->method)};
      res.set_header("Allow", same_path->method);
    } else {
      error.message = fmt::format("{} is not an endpoint of this server (it has {})", target, endpoint_list());
    }
  } else if (fault != Fault::kNone && fault != Fault::kBroken) {
    error = fault_error(fault, max_body_bytes_);
  } else if (res.status == 400 && connection && connection->reading_headers()) {
    error.message = "the request line or headers are not valid HTTP/1.1 (or a header line is longer than 8192 bytes)";
  } else if (res.status == 400) {
    error.message = "the request body is shorter than its Content-Length, or its chunked encoding is malformed";
  } else if (res.status == 413) {
    error.message = fmt::format("the request body is larger than {} bytes, this server's limit", max_body_bytes_);
  } else if (res.status == 414) {
    error.message = fmt::format("the request line is longer than {} bytes", CPPHTTPLIB_REQUEST_URI_MAX_LENGTH);
  } else if (res.status == 416) {
    error.message = "the Range header is malformed";
  } else {
    error.message = fmt::format("HTTP error {}", res.status);
  }
  send_error(res, error);
  if (error.status != 404 && error.status != 405) {  // the rest of the request may be unread
    res.set_header("Connection", "close");
    if (t_connection) t_connection->close_after_response();
  }
}

}  // namespace rvec
