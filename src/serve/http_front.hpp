// The HTTP side of `rvec serve`: cpp-httplib's request parser and router,
// run over connections that enforce serve_limits (limits.hpp).
//
// - Every connection has a thread of its own, up to `max_connections`; one
//   more is answered 503 and closed on the accepting thread, so slow or idle
//   clients can never keep /health or other clients waiting.
// - A request must arrive within kRequestDeadline, with no pause longer than
//   kIdleTimeout, its request line and headers within kMaxHeaderBytes and its
//   body within the body limit; otherwise it is answered 408, 431 or 413.
// - Content-Length is checked before any of the body is read (400 for one
//   that is not a number, 413 for one over the limit); compressed and
//   multipart bodies are refused (415), and a chunked body is cut off at the
//   limit, so no request grows past the limit in memory.
// - Every error is an OpenAI error object that says what is wrong; handlers
//   refuse a request by throwing HttpError, and any other exception becomes
//   a 500 without ending the server.
//
// Thread-safety: configure (route(), set_max_body_bytes()) before listening;
// stop() may be called from any thread.
#pragma once

#include <httplib.h>

#include <atomic>
#include <functional>
#include <regex>
#include <string>
#include <vector>

namespace rvec {

class HttpFront : public httplib::Server {
 public:
  // `body` is the request's body, complete and within the size limit.
  using Handler = std::function<void(const httplib::Request& req, const std::string& body, httplib::Response& res)>;

  HttpFront(size_t max_connections, size_t max_body_bytes);
  ~HttpFront() override;

  // Serves `method` ("GET" or "POST") on `path`, in which "{id}" stands for
  // one or more characters (the handler finds them in req.matches[1]). An
  // HttpError thrown by the handler becomes its error response.
  void route(const std::string& method, const std::string& path, Handler handler);

  // Browser origins ("https://example.org", or "*" for any) that may call
  // the server: their requests get Access-Control-Allow-Origin, and their
  // preflight requests (OPTIONS) the methods and headers they ask for. Other
  // origins get no CORS headers, so browsers keep them out. None by default.
  void set_allowed_origins(std::vector<std::string> origins) { allowed_origins_ = std::move(origins); }

  // Binds `host`:`port` (0: a free port) with a listen backlog of
  // kListenBacklog; returns the port, or -1 if it cannot.
  int bind(const std::string& host, int port);

  // Stops listening and ends idle connections; requests in flight finish.
  // Hides httplib::Server::stop().
  void stop();

  // Serves one connected socket on the calling thread until the client
  // closes it, it times out or the server stops; then closes it. The
  // accepting loop calls this for every connection; the fuzzer calls it
  // directly.
  void serve_connection(int fd);

  // Exceptions that escaped httplib's request processing (each dropped its
  // connection and was logged). Zero unless rvec or httplib has a bug; the
  // fuzzer checks it.
  size_t internal_errors() const { return internal_errors_; }

 private:
  struct Endpoint {
    std::string method, path;  // path as shown, with "{id}"
    std::regex pattern;
  };
  bool process_and_close_socket(socket_t sock) override;
  std::string read_body(const httplib::ContentReader& reader) const;
  HandlerResponse check_framing(const httplib::Request& req, httplib::Response& res) const;
  void describe_error(const httplib::Request& req, httplib::Response& res) const;
  std::string endpoint_list() const;
  const Endpoint* endpoint_at(const std::string& path) const;
  void allow_origin(const httplib::Request& req, httplib::Response& res) const;
  HandlerResponse answer_preflight(const httplib::Request& req, httplib::Response& res) const;

  size_t max_connections_;
  size_t max_body_bytes_;
  std::vector<Endpoint> endpoints_;
  std::vector<std::string> allowed_origins_;
  int stop_pipe_[2] = {-1, -1};  // readable once stop() was called
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> internal_errors_{0};
};

}  // namespace rvec
