// libFuzzer target: any bytes as what a client sends on one connection to
// `rvec serve` (request lines, headers, bodies, several requests pipelined),
// through the real HTTP front and the OpenAI routes to parse_request, over a
// stand-in backend instead of the engine. A bug is a crash, a sanitizer
// report, an exception that escapes, a 500, a response that is not HTTP, or
// a JSON body that does not parse.
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "serve/api.hpp"
#include "serve/byte_model.hpp"
#include "serve/http_error.hpp"
#include "serve/http_front.hpp"
#include "serve/limits.hpp"

namespace {

// Answers each parsed request with a summary of it.
class SummaryBackend final : public rvec::CompletionBackend {
 public:
  const rvec::ServedModel* model() const override { return &model_; }
  std::string unavailable_reason() const override { return ""; }
  void complete(rvec::ParsedRequest request, httplib::Response& res) override {
    res.set_content(rvec::json_text({{"prompt_tokens", request.prompt_tokens}, {"choices", request.choices.size()}}),
                    "application/json");
  }

 private:
  rvec::ServedModel model_ = rvec::test::byte_model(512);
};

struct Harness {
  Harness() { rvec::add_api_routes(front, "tiny", "/models/tiny", backend); }
  SummaryBackend backend;
  rvec::HttpFront front{8, rvec::serve_limits::max_body_bytes(512)};
};

// Aborts (a finding for libFuzzer) unless `ok`, printing what the server wrote.
void check(bool ok, std::string_view output = {}) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_http: bad answer:\n%.*s\n", static_cast<int>(output.size()), output.data());
  std::abort();
}

// Reads everything the server wrote, then checks it response by response.
void check_responses(int fd) {
  std::string out;
  char buffer[65536];
  for (ssize_t n; (n = read(fd, buffer, sizeof buffer)) > 0;) out.append(buffer, static_cast<size_t>(n));
  std::string_view rest(out);
  while (!rest.empty()) {
    check(rest.substr(0, 9) == "HTTP/1.1 ", out);
    const int status = std::atoi(std::string(rest.substr(9, 3)).c_str());
    check(status >= 100 && status < 500, out);
    const size_t header_end = rest.find("\r\n\r\n");
    check(header_end != std::string_view::npos, out);
    const std::string_view headers = rest.substr(0, header_end);
    rest.remove_prefix(header_end + 4);
    const size_t length_at = headers.find("Content-Length: ");
    if (length_at == std::string_view::npos) continue;  // a response with no body
    if (rest.empty() || rest.substr(0, 9) == "HTTP/1.1 ") continue;  // the answer to HEAD: no body
    const size_t length = std::strtoull(std::string(headers.substr(length_at + 16)).c_str(), nullptr, 10);
    check(length <= rest.size(), out);
    const std::string_view body = rest.substr(0, length);
    if (headers.find("Content-Type: application/json") != std::string_view::npos) {
      check(nlohmann::json::accept(body), out);
    }
    rest.remove_prefix(length);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Harness harness;
  int fds[2];
  check(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
  const int room = 4 << 20;  // the input and every response fit: nothing blocks
  for (const int fd : fds) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &room, sizeof room);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &room, sizeof room);
  }
  check(write(fds[1], data, size) == static_cast<ssize_t>(size));
  shutdown(fds[1], SHUT_WR);
  harness.front.serve_connection(fds[0]);  // closes fds[0]
  check_responses(fds[1]);
  close(fds[1]);
  check(harness.front.internal_errors() == 0);
  return 0;
}
