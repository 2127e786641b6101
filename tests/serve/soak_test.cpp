// A bounded soak of `rvec serve` on 127.0.0.1: for about 20 seconds, slow
// clients, stalled bodies, clients that disconnect mid-request or
// mid-stream, huge bodies and normal traffic hit the server at once, while
// the test checks that /health and a normal completion keep answering within
// a deadline and that resident memory stays bounded.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "serve/serve_util.hpp"

namespace rvec {
namespace {

using nlohmann::json;
using test::RawConnection;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr auto kSoakTime = std::chrono::seconds(20);
constexpr auto kDeadline = std::chrono::seconds(5);  // the server promises well under a second
constexpr long kMaxGrowthKib = 256 * 1024;

std::string post(const std::string& body, bool stream = false) {
  json request = {{"prompt", body}, {"max_tokens", 8}, {"temperature", 0.7}, {"seed", 1}};
  if (stream) request["stream"] = true;
  const std::string text = request.dump();
  return "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: " +
         std::to_string(text.size()) + "\r\n\r\n" + text;
}

// Runs `client` in a loop on its own thread until `stop`.
class Load {
 public:
  void add(std::function<void()> client) {
    threads_.emplace_back([this, client = std::move(client)] {
      while (!stop_) client();
    });
  }
  bool stopping() const { return stop_; }
  ~Load() {
    stop_ = true;
    for (auto& thread : threads_) thread.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

void pause_unless(const Load& load, milliseconds time) {
  const auto until = Clock::now() + time;
  while (!load.stopping() && Clock::now() < until) std::this_thread::sleep_for(milliseconds(20));
}

TEST(ServeSoak, AnswersHealthAndCompletionsWhileAbused) {
  test::TinyServer server;
  ASSERT_TRUE(server.ready()) << server.log();
  const std::string base = server.url();
  const long baseline = test::resident_kib(server.pid());
  std::atomic<long> normal_failures{0};
  {
    Load load;
    // 60 slow clients: a header byte every 200 ms, cut off by the 30 s request deadline.
    for (int t = 0; t < 3; ++t) {
      load.add([&] {
        std::vector<std::unique_ptr<RawConnection>> slow;
        for (int i = 0; i < 20; ++i) {
          slow.push_back(std::make_unique<RawConnection>(base));
          slow.back()->send("GET /health HTTP/1.1\r\n");
        }
        for (int beat = 0; beat < 50 && !load.stopping(); ++beat) {
          for (auto& c : slow) c->send("X");
          pause_unless(load, milliseconds(200));
        }
      });
    }
    // 100 stalled bodies, dropped by the server after the 5 s idle timeout.
    load.add([&] {
      std::vector<std::unique_ptr<RawConnection>> stalled;
      for (int i = 0; i < 100; ++i) {
        stalled.push_back(std::make_unique<RawConnection>(base));
        stalled.back()->send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{\"pro");
      }
      pause_unless(load, std::chrono::seconds(7));
    });
    // Disconnects mid-request and mid-stream.
    load.add([&] {
      RawConnection half(base);
      half.send(post("disconnect").substr(0, 50));
      RawConnection streaming(base);
      streaming.send(post("stream and go", true));
      std::this_thread::sleep_for(milliseconds(5));
    });
    // Huge bodies: declared, sent in part, over the limit as chunks.
    load.add([&] {
      RawConnection declared(base);
      declared.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n");
      for (int i = 0; i < 8 && declared.send(std::string(1 << 20, ' ')); ++i) {
      }
      declared.read_response(milliseconds(100));
      RawConnection chunked(base);
      chunked.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
      const std::string chunk = "100000\r\n" + std::string(0x100000, ' ') + "\r\n";
      for (int i = 0; i < 4 && chunked.send(chunk); ++i) {
      }
      chunked.read_response(milliseconds(100));
    });
    // Normal traffic.
    for (int t = 0; t < 2; ++t) {
      load.add([&, t] {
        RawConnection client(base);
        client.send(post("normal traffic " + std::to_string(t), t == 1));
        if (client.read_response().status != 200) ++normal_failures;
      });
    }

    const auto end = Clock::now() + kSoakTime;
    Clock::duration slowest{};
    while (Clock::now() < end) {
      const auto start = Clock::now();
      RawConnection health(base);
      health.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
      EXPECT_EQ(health.read_response(kDeadline).status, 200);
      const auto health_time = Clock::now() - start;
      RawConnection completion(base);
      completion.send(post("probe"));
      EXPECT_EQ(completion.read_response(kDeadline).status, 200);
      slowest = std::max(slowest, Clock::now() - start);
      EXPECT_LT(health_time, kDeadline);
      const long resident = test::resident_kib(server.pid());
      if (!test::kAddressSanitizer) {
        EXPECT_LT(resident - baseline, kMaxGrowthKib) << "resident " << resident << " KiB, " << baseline << " at the start";
      }
      std::this_thread::sleep_for(milliseconds(250));
    }
    std::cout << "[ measured ] slowest /health + completion under load: "
              << std::chrono::duration_cast<milliseconds>(slowest).count() << " ms; resident memory " << baseline
              << " KiB at the start, " << test::resident_kib(server.pid()) << " KiB at the end\n";
  }
  EXPECT_EQ(normal_failures, 0);
  EXPECT_EQ(test::raw_http(base, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").status, 200) << server.log();
}

}  // namespace
}  // namespace rvec
