// ManagedServer and its helpers: ports a sweep's workers cannot share, and
// readiness that waits for the model, not just for an answer.
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <set>
#include <string>
#include <thread>

#include "base/error.hpp"
#include "serve/managed_server.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

// An HTTP server on a free port that answers GET /health and /v1/models with
// the given statuses (404: the route is missing).
class StatusServer {
 public:
  StatusServer(int health, int models) {
    if (health != 404) server_.Get("/health", [health](const httplib::Request&, httplib::Response& res) { res.status = health; });
    if (models != 404) {
      server_.Get("/v1/models", [models](const httplib::Request&, httplib::Response& res) {
        res.status = models;
        res.set_content(R"({"object": "list", "data": [{"id": "someone"}]})", "application/json");
      });
    }
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~StatusServer() {
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

TEST(ManagedServer, FreeLocalPortsAreNeverRepeatedInOneProcess) {
  // The kernel's choice alone repeats a port about 140 times in 2,000 draws
  // (the birthday bound over ~14,000 ports), so two workers could collide.
  std::set<int> ports;
  for (int i = 0; i < 2000; ++i) ports.insert(free_local_port());
  EXPECT_EQ(ports.size(), 2000u);
}

TEST(ManagedServer, AServerStillLoadingItsModelIsNotReady) {
  // /health says 503 (loading) while /v1/models already answers: not ready.
  test::TempDir dir;
  const StatusServer loading(503, 200);
  ManagedServer idle("exec sleep 30", (dir / "log").string());
  try {
    idle.wait_ready(loading.url(), 1.0);
    FAIL() << "a server answering 503 at /health was taken as ready";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("did not answer"), std::string::npos) << e.what();
  }
}

TEST(ManagedServer, AServerWithoutHealthIsReadyWhenItListsModels) {
  test::TempDir dir;
  const StatusServer no_health(404, 200);
  ManagedServer idle("exec sleep 30", (dir / "log").string());
  EXPECT_NO_THROW(idle.wait_ready(no_health.url(), 5.0));
  const StatusServer healthy(200, 404);
  EXPECT_NO_THROW(idle.wait_ready(healthy.url(), 5.0));
}

TEST(ManagedServer, HttpGetReturnsStatusAndBodyAndZeroWhenNothingAnswers) {
  const StatusServer server(200, 200);
  const HttpAnswer models = http_get(server.url() + "/v1/models");
  EXPECT_EQ(models.status, 200);
  EXPECT_NE(models.body.find("someone"), std::string::npos) << models.body;
  EXPECT_EQ(http_get("http://127.0.0.1:" + std::to_string(free_local_port()) + "/health").status, 0);
}

TEST(ManagedServer, ABodyOverOneMebibyteCountsAsNoAnswer) {
  httplib::Server server;
  server.Get("/v1/models", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string((size_t{1} << 20) + 1, ' '), "application/json");
  });
  server.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string(size_t{1} << 20, ' '), "application/json");
  });
  const int port = server.bind_to_any_port("127.0.0.1");
  std::thread listening([&] { server.listen_after_bind(); });
  while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const std::string url = "http://127.0.0.1:" + std::to_string(port);
  EXPECT_EQ(http_get(url + "/v1/models").status, 0);
  const HttpAnswer at_the_limit = http_get(url + "/health");
  EXPECT_EQ(at_the_limit.status, 200);
  EXPECT_EQ(at_the_limit.body.size(), size_t{1} << 20);
  server.stop();
  listening.join();
}

}  // namespace
}  // namespace rvec
