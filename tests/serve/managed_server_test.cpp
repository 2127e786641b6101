// ManagedServer and its helpers: ports a sweep's workers cannot share, and
// readiness that waits for the model, not just for an answer.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "base/error.hpp"
#include "serve/managed_server.hpp"
#include "serve/serve_util.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

// An HTTP server on a free port that answers GET /health and /v1/models with
// the given statuses (404: the route is missing).
test::LocalHttpServer status_server(int health, int models) {
  return test::LocalHttpServer([=](httplib::Server& server) {
    if (health != 404) server.Get("/health", [health](const httplib::Request&, httplib::Response& res) { res.status = health; });
    if (models == 404) return;
    server.Get("/v1/models", [models](const httplib::Request&, httplib::Response& res) {
      res.status = models;
      res.set_content(R"({"object": "list", "data": [{"id": "someone"}]})", "application/json");
    });
  });
}

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
  const auto loading = status_server(503, 200);
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
  const auto no_health = status_server(404, 200);
  ManagedServer idle("exec sleep 30", (dir / "log").string());
  EXPECT_NO_THROW(idle.wait_ready(no_health.url(), 5.0));
  const auto healthy = status_server(200, 404);
  EXPECT_NO_THROW(idle.wait_ready(healthy.url(), 5.0));
}

TEST(ManagedServer, HttpGetReturnsStatusAndBodyAndZeroWhenNothingAnswers) {
  const auto server = status_server(200, 200);
  const HttpAnswer models = http_get(server.url() + "/v1/models");
  EXPECT_EQ(models.status, 200);
  EXPECT_NE(models.body.find("someone"), std::string::npos) << models.body;
  EXPECT_EQ(http_get("http://127.0.0.1:" + std::to_string(free_local_port()) + "/health").status, 0);
}

TEST(ManagedServer, ABodyOverOneMebibyteCountsAsNoAnswer) {
  const test::LocalHttpServer server([](httplib::Server& routes) {
    routes.Get("/v1/models", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(std::string((size_t{1} << 20) + 1, ' '), "application/json");
    });
    routes.Get("/health", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(std::string(size_t{1} << 20, ' '), "application/json");
    });
  });
  EXPECT_EQ(http_get(server.url() + "/v1/models").status, 0);
  const HttpAnswer at_the_limit = http_get(server.url() + "/health");
  EXPECT_EQ(at_the_limit.status, 200);
  EXPECT_EQ(at_the_limit.body.size(), size_t{1} << 20);
}

}  // namespace
}  // namespace rvec
