// Integration tests: numbers that come from outside (token ids on the command
// line and in requests, integer flags) are read as what they say or refused
// with one line, never wrapped, saturated or read as octal.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "serve/serve_util.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

class NumbersFromOutside : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    test::write_chat_model(dir_->path() / "model");
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string model() { return (dir_->path() / "model").string(); }
  static test::TempDir* dir_;
};
test::TempDir* NumbersFromOutside::dir_ = nullptr;

void expect_usage_error(const std::string& args, const std::string& message) {
  const auto r = test::run_rvec(args);
  EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
  EXPECT_EQ(r.output, "rvec: error: " + message + "\n") << args;
}

TEST_F(NumbersFromOutside, TokenIdsOnTheCommandLineAreCheckedAgainstTheVocabulary) {
  expect_usage_error("generate " + model() + " --ids 1,4294967345 -n 2",
                     "token id 4294967345 is outside the vocabulary (0..299)");
  expect_usage_error("generate " + model() + " --ids 4294967295 -n 2",
                     "token id 4294967295 is outside the vocabulary (0..299)");
  expect_usage_error("tokenize " + model() + " --decode 4294967345",
                     "token id 4294967345 is outside the vocabulary (0..299)");
  const auto decoded = test::run_rvec("tokenize " + model() + " --decode 104,105");
  EXPECT_EQ(decoded.exit_code, 0) << decoded.output;
  EXPECT_EQ(decoded.output, "hi\n");
}

TEST_F(NumbersFromOutside, TokenIdsInARequestAreCheckedAgainstTheVocabulary) {
  test::ServerProcess server(dir_->path() / "model", dir_->path() / "serve.log");
  ASSERT_TRUE(server.wait_ready()) << test::read_file(dir_->path() / "serve.log");
  const auto complete = [&](const json& prompt) {
    return test::http(server.url() + "/v1/completions",
                      json{{"prompt", prompt}, {"max_tokens", 2}, {"temperature", 0}}.dump());
  };
  const auto expect_refused = [&](const json& prompt, const std::string& message) {
    const auto r = complete(prompt);
    EXPECT_EQ(r.status, 400) << r.body;
    const auto body = json::parse(r.body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << r.body;
    EXPECT_EQ(body["error"]["message"], message);
    EXPECT_EQ(body["error"]["param"], "prompt");
  };
  // The server reads ids with its request parser (serve/request.cpp): same check, its own words.
  expect_refused({104, 4294967345ull}, "prompt[1] must be a token id from 0 to 299 (got 4294967345, outside the vocabulary)");
  expect_refused({4294967295ull}, "prompt[0] must be a token id from 0 to 299 (got 4294967295, outside the vocabulary)");
  expect_refused({-1}, "prompt[0] must be a token id from 0 to 299 (got -1, outside the vocabulary)");
  expect_refused({1.5}, "prompt[0] must be a token id from 0 to 299 (got 1.5, outside the vocabulary)");
  EXPECT_EQ(complete({104, 49}).status, 200);
  EXPECT_EQ(server.terminate(), 0);
}

TEST_F(NumbersFromOutside, IntegerFlagsAreDecimalAndInRange) {
  const std::string generate = "generate " + model() + " --ids 104 ";
  expect_usage_error(generate + "--threads -1", "--threads: \"-1\" is not a non-negative integer (see rvec --help)");
  expect_usage_error(generate + "-n -1", "--max-tokens: \"-1\" is not a non-negative integer (see rvec --help)");
  expect_usage_error(generate + "-n 0x10", "--max-tokens: \"0x10\" is not a non-negative integer (see rvec --help)");
  expect_usage_error(generate + "--seed 18446744073709551616",
                     "--seed: 18446744073709551616 is out of range (see rvec --help)");
  expect_usage_error(generate + "-n 0", "max_tokens must be at least 1");
  const auto octal_looking = test::run_rvec(generate + "-n 010 --json");
  ASSERT_EQ(octal_looking.exit_code, 0) << octal_looking.output;
  EXPECT_EQ(json::parse(octal_looking.output)["completion_tokens"], 10);  // ten, not octal eight
}

}  // namespace
}  // namespace rvec
