// Drives a real `rvec serve` process over HTTP with libcurl.
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "engine/tiny_model.hpp"
#include "serve/serve_util.hpp"
#include "test_util.hpp"
#include "text/unicode.hpp"

namespace rvec {
namespace {

using nlohmann::json;
using test::http;
using test::HttpResult;
using test::ServerProcess;
using test::write_chat_model;
namespace fs = std::filesystem;

json chat_body(const std::string& content, double temperature, int seed, int max_tokens = 12) {
  return {{"model", "tiny"},
          {"messages", {{{"role", "user"}, {"content", content}}}},
          {"temperature", temperature},
          {"seed", seed},
          {"max_tokens", max_tokens}};
}

class ServeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new test::TinyServer();
    ASSERT_TRUE(server_->ready()) << server_->log();
  }
  static void TearDownTestSuite() { delete server_; }
  static std::string url(const std::string& path) { return server_->url() + path; }
  static test::TinyServer* server_;
};
test::TinyServer* ServeTest::server_ = nullptr;

TEST_F(ServeTest, ListsTheModelAndReportsHealth) {
  const auto models = http(url("/v1/models"));
  ASSERT_EQ(models.status, 200);
  EXPECT_EQ(json::parse(models.body)["data"][0]["id"], "tiny");
  EXPECT_EQ(http(url("/health")).status, 200);
}

TEST_F(ServeTest, ChatCompletionMatchesGenerateCli) {
  const auto result = http(url("/v1/chat/completions"), chat_body("hello", 0.0, 1).dump());
  ASSERT_EQ(result.status, 200) << result.body;
  const auto body = json::parse(result.body);
  EXPECT_EQ(body["object"], "chat.completion");
  const auto& choice = body["choices"][0];
  EXPECT_EQ(choice["message"]["role"], "assistant");
  EXPECT_TRUE(choice["finish_reason"] == "stop" || choice["finish_reason"] == "length");
  EXPECT_EQ(body["usage"]["prompt_tokens"].get<int>() + body["usage"]["completion_tokens"].get<int>(),
            body["usage"]["total_tokens"].get<int>());
  EXPECT_LE(body["usage"]["completion_tokens"].get<int>(), 12);
  const auto cli = test::run_rvec("generate " + server_->model().string() +
                                  " --chat -p hello -n 12 --json --threads 1 2>/dev/null");
  ASSERT_EQ(cli.exit_code, 0) << cli.output;
  EXPECT_EQ(json::parse(cli.output)["text"], choice["message"]["content"]);
}

TEST_F(ServeTest, StreamingDeltasAddUpToTheWholeAnswer) {
  auto request = chat_body("stream me", 0.7, 5, 20);
  const auto whole = json::parse(http(url("/v1/chat/completions"), request.dump()).body);
  request["stream"] = true;
  request["stream_options"] = {{"include_usage", true}};
  const auto streamed = http(url("/v1/chat/completions"), request.dump());
  ASSERT_EQ(streamed.status, 200);
  std::string text, finish;
  bool done = false, usage = false;
  std::istringstream lines(streamed.body);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("data: ", 0) != 0) continue;
    const auto data = line.substr(6);
    if (data == "[DONE]") {
      done = true;
      continue;
    }
    const auto chunk = json::parse(data);
    EXPECT_EQ(chunk["object"], "chat.completion.chunk");
    if (chunk.contains("usage")) usage = chunk["usage"]["completion_tokens"] == whole["usage"]["completion_tokens"];
    if (chunk["choices"].empty()) continue;
    const auto& delta = chunk["choices"][0]["delta"];
    if (delta.contains("content")) text += delta["content"].get<std::string>();
    if (!chunk["choices"][0]["finish_reason"].is_null()) finish = chunk["choices"][0]["finish_reason"];
  }
  EXPECT_TRUE(done);
  EXPECT_TRUE(usage);
  EXPECT_EQ(text, whole["choices"][0]["message"]["content"]);
  EXPECT_EQ(finish, whole["choices"][0]["finish_reason"]);
}

// Twelve requests at once are batched together; each gets exactly what it
// gets alone, because every sequence samples from its own seeded generator.
TEST_F(ServeTest, ConcurrentRequestsAreBatchedAndReproducible) {
  std::vector<std::future<HttpResult>> concurrent;
  for (int i = 0; i < 12; ++i) {
    concurrent.push_back(std::async(std::launch::async, [i] {
      return http(url("/v1/completions"),
                  json{{"prompt", "text " + std::to_string(i)}, {"max_tokens", 10}, {"temperature", 0.9}, {"seed", i}}.dump());
    }));
  }
  for (int i = 0; i < 12; ++i) {
    const auto together = concurrent[i].get();
    ASSERT_EQ(together.status, 200) << together.body;
    const auto alone = http(url("/v1/completions"),
                            json{{"prompt", "text " + std::to_string(i)}, {"max_tokens", 10}, {"temperature", 0.9}, {"seed", i}}.dump());
    EXPECT_EQ(json::parse(together.body)["choices"][0]["text"], json::parse(alone.body)["choices"][0]["text"]) << i;
  }
}

TEST_F(ServeTest, SeveralChoicesAndStopStrings) {
  auto body = chat_body("n please", 1.0, 3, 16);
  body["n"] = 3;
  const auto result = json::parse(http(url("/v1/chat/completions"), body.dump()).body);
  ASSERT_EQ(result["choices"].size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(result["choices"][i]["index"], i);
  // Whatever the model says, stopping at an ASCII character it wrote must cut
  // the answer just before it, with finish_reason "stop".
  const auto first = result["choices"][0]["message"]["content"].get<std::string>();
  const auto at = std::find_if(first.begin(), first.end(), [](char c) { return c > 0x20 && c < 0x7F; });
  if (at == first.end()) GTEST_SKIP() << "the random model wrote no ASCII";
  body["n"] = 1;
  body["stop"] = std::string(1, *at);
  const auto cut = json::parse(http(url("/v1/chat/completions"), body.dump()).body);
  EXPECT_EQ(cut["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(cut["choices"][0]["message"]["content"], first.substr(0, first.find(*at)));
}

TEST_F(ServeTest, BadRequestsGetOpenAiErrors) {
  const auto expect = [&](const std::string& path, const std::string& body, long status, const std::string& needle) {
    const auto result = http(url(path), body, true);
    EXPECT_EQ(result.status, status) << body << " -> " << result.body;
    const auto parsed = json::parse(result.body, nullptr, false);
    ASSERT_TRUE(parsed.is_object()) << result.body;
    EXPECT_NE(parsed["error"]["message"].get<std::string>().find(needle), std::string::npos) << result.body;
  };
  expect("/v1/chat/completions", "{not json", 400, "not valid JSON");
  expect("/v1/chat/completions", chat_body("x", -1, 0).dump(), 400, "temperature");
  expect("/v1/chat/completions", chat_body("x", 0, 0, 100000).dump(), 400, "context");
  expect("/v1/chat/completions", json{{"messages", json::array()}}.dump(), 400, "messages");
  expect("/v1/completions", json{{"prompt", {1, 2, 100000}}, {"max_tokens", 2}}.dump(), 400, "outside the vocabulary");
  expect("/v1/completions", json{{"model", "gpt-9"}, {"prompt", "x"}}.dump(), 404, "does not exist");
  expect("/v1/nothing", "{}", 404, "not an endpoint");
  EXPECT_EQ(http(url("/health")).status, 200);  // still serving after all that
}

// Issue 14, item 11: invalid UTF-8 in the body, "stream": null and a
// non-boolean include_usage were 500s with nlohmann's text.
TEST_F(ServeTest, BadFieldValuesAre400sThatNameTheField) {
  const auto expect = [&](const std::string& path, const std::string& body, const std::string& param,
                          const std::string& needle) {
    const auto result = http(url(path), body, true);
    EXPECT_EQ(result.status, 400) << body << " -> " << result.body;
    const auto parsed = json::parse(result.body, nullptr, false);
    ASSERT_TRUE(parsed.is_object()) << result.body;
    EXPECT_EQ(parsed["error"]["param"], param) << body << " -> " << result.body;
    const auto message = parsed["error"]["message"].get<std::string>();
    EXPECT_NE(message.find(needle), std::string::npos) << result.body;
    EXPECT_EQ(message.find("json.exception"), std::string::npos) << result.body;
  };
  const auto chat = [](const std::string& field, const json& value) {
    auto body = chat_body("hi", 0, 1, 4);
    body[field] = value;
    return body.dump();
  };
  expect("/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"bad \xC3\x28\"}]}",
         "messages[0].content", "UTF-8");
  expect("/v1/chat/completions", chat("stream_options", {{"include_usage", "yes"}}), "stream_options.include_usage",
         "true or false");
  expect("/v1/chat/completions", chat("stream_options", 1), "stream_options", "must be an object");
  expect("/v1/chat/completions", chat("stream", "yes"), "stream", "true or false");
  expect("/v1/chat/completions", chat("n", 1.5), "n", "integer");
  expect("/v1/chat/completions", chat("max_tokens", "12"), "max_tokens", "integer");
  expect("/v1/chat/completions", chat("seed", "x"), "seed", "integer");
  expect("/v1/chat/completions", chat("stop", {1}), "stop", "string");
  expect("/v1/chat/completions", chat("stop", std::string(1000, 'x')), "stop", "at most 256 bytes");
  expect("/v1/chat/completions", chat("temperature", "hot"), "temperature", "number");
  expect("/v1/chat/completions", chat("logit_bias", json::object()), "logit_bias", "not supported");
  expect("/v1/chat/completions", chat("messages", {{{"role", 5}, {"content", "x"}}}), "messages[0].role", "role");
  expect("/v1/chat/completions", chat("messages", {{{"role", "user"}, {"content", {{"a", 1}}}}}),
         "messages[0].content", "content");
  expect("/v1/completions", json{{"prompt", {1, 4294967345}}}.dump(), "prompt", "outside the vocabulary");
  expect("/v1/completions", json{{"prompt", {1, -1}}}.dump(), "prompt", "outside the vocabulary");
  // null means "not given", as in OpenAI's API.
  auto with_nulls = chat_body("hi", 0, 1, 4);
  for (const char* field : {"stream", "stream_options", "n", "stop", "top_p"}) with_nulls[field] = nullptr;
  const auto result = http(url("/v1/chat/completions"), with_nulls.dump());
  EXPECT_EQ(result.status, 200) << result.body;
}

TEST(Serve, AnswersServiceUnavailableWhileLoadingAndStopsOnSigterm) {
  test::TempDir dir;
  write_chat_model(dir / "model");
  // Loading takes 5 s, so both requests below land while it loads, also on a loaded machine under ASan.
  ServerProcess server(dir / "model", dir / "serve.log", "RVEC_TEST_SLOW_LOAD_MS=5000");
  ASSERT_FALSE(server.url().empty()) << test::read_file(dir / "serve.log");
  EXPECT_EQ(http(server.url() + "/health").status, 503);
  EXPECT_EQ(http(server.url() + "/v1/chat/completions", chat_body("x", 0, 0).dump()).status, 503);
  ASSERT_TRUE(server.wait_ready());
  EXPECT_EQ(server.terminate(), 0) << test::read_file(dir / "serve.log");
}

TEST(Serve, UnloadableModelExitsWithTheReason) {
  test::TempDir dir;
  fs::create_directories(dir / "empty");
  const auto run = test::run_rvec("serve " + (dir / "empty").string() + " --port 0");
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.output.find("rvec: error:"), std::string::npos) << run.output;
}

}  // namespace
}  // namespace rvec
