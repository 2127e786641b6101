// A broken model (NaN weights) behind the real CLI and server: non-finite
// logits end the generation that met them with one clear error, at any
// temperature; other requests and the server go on.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <future>
#include <nlohmann/json.hpp>

#include "engine/tiny_model.hpp"
#include "serve/serve_util.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

using nlohmann::json;
using test::http;
namespace fs = std::filesystem;

// Token 90 ('Z' in the chat model's byte-level vocabulary) has a NaN embedding.
constexpr int kPoisoned = 90;

class BrokenModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    test::write_chat_model(dir_->path() / "model");
    test::poison_embedding_row(dir_->path() / "model", kPoisoned);
  }
  static void TearDownTestSuite() { delete dir_; }
  static fs::path model() { return dir_->path() / "model"; }
  static test::TempDir* dir_;
};
test::TempDir* BrokenModel::dir_ = nullptr;

TEST_F(BrokenModel, GenerateExitsWithOneLineAtAnyTemperature) {
  for (const char* temperature : {"0", "1"}) {
    const auto r = test::run_rvec(
        fmt::format("generate {} --ids 104,{} -n 4 --temperature {}", model().string(), kPoisoned, temperature));
    EXPECT_EQ(r.exit_code, 4) << "temperature " << temperature << ": " << r.output;
    EXPECT_NE(
        r.output.find("rvec: error: " + model().string() + ": the model produced non-finite logits (nan for token 0)"),
        std::string::npos)
        << r.output;
  }
  const auto healthy = test::run_rvec("generate " + model().string() + " --ids 104,105 -n 4 --temperature 1 --json");
  EXPECT_EQ(healthy.exit_code, 0) << healthy.output;
}

TEST_F(BrokenModel, ServerFailsOnlyTheRequestThatMetNonFiniteLogits) {
  test::ServerProcess server(model(), dir_->path() / "serve.log");
  ASSERT_TRUE(server.wait_ready()) << test::read_file(dir_->path() / "serve.log");
  const std::string completions = server.url() + "/v1/completions";
  // No temperature: the default (1) samples, which used to crash the server.
  const json broken = {{"prompt", {104, kPoisoned}}, {"max_tokens", 4}, {"n", 2}};
  const json healthy = {{"prompt", {104, 105}}, {"max_tokens", 4}};
  auto broken_reply = std::async(std::launch::async, [&] { return http(completions, broken.dump()); });
  auto healthy_reply = std::async(std::launch::async, [&] { return http(completions, healthy.dump()); });
  const auto failed = broken_reply.get();
  EXPECT_EQ(failed.status, 500) << failed.body;
  EXPECT_NE(failed.body.find("non-finite logits"), std::string::npos) << failed.body;
  EXPECT_EQ(healthy_reply.get().status, 200);

  json stream = broken;
  stream["stream"] = true;
  stream["temperature"] = 0;
  const auto streamed = http(completions, stream.dump());
  EXPECT_EQ(streamed.status, 200);  // the stream had started; the error is its last event
  EXPECT_NE(streamed.body.find("non-finite logits"), std::string::npos) << streamed.body;
  EXPECT_NE(streamed.body.find("data: [DONE]"), std::string::npos) << streamed.body;

  const json chat = {{"messages", {{{"role", "user"}, {"content", "Zebra"}}}}, {"max_tokens", 4}};
  EXPECT_EQ(http(server.url() + "/v1/chat/completions", chat.dump()).status, 500);
  EXPECT_EQ(http(server.url() + "/health").status, 200);
  EXPECT_EQ(http(completions, healthy.dump()).status, 200);
  EXPECT_EQ(server.terminate(), 0) << test::read_file(dir_->path() / "serve.log");
}

}  // namespace
}  // namespace rvec
