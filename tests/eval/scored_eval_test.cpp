// `rvec eval --score` (issue 16): multiple choice by log-likelihood against a
// live rvec serve, each option's score checked against the f64 reference
// forward pass of the same weights (tiny_model.hpp).
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <vector>

#include "engine/tiny_model.hpp"
#include "serve/serve_util.hpp"
#include "test_util.hpp"
#include "text/tokenizer.hpp"

namespace rvec {
namespace {

using nlohmann::json;
using test::TempDir;

struct Item {
  std::string question;
  std::vector<std::string> options;
};

const std::vector<Item> kItems = {
    {"Q0: which pet?", {"cat", "dog", "a fish", "birds"}},
    {"Q1: which colour?", {"red", "green", "blue"}},
    {"Q2: which number?", {"one", "two", "three", "four", "five"}},
    {"Q3: which day?", {"monday", "friday"}},
    {"Q4: which word?", {"hello", "the", "sheep", "he"}},
    {"Q5: which fruit?", {"apple", "pear", "plum", "kiwi"}},
};

class ScoredEval : public ::testing::Test {
 protected:
  void SetUp() override {
    test::write_chat_model(dir_ / "model");
    server_ = std::make_unique<test::ServerProcess>(dir_ / "model", dir_ / "serve.log");
    ASSERT_TRUE(server_->wait_ready()) << test::read_file(dir_ / "serve.log");
    test::TinyModelSpec spec;  // as write_chat_model writes it
    spec.vocab = 300;
    spec.hidden = 32;
    weights_ = test::write_tiny_model(dir_ / "weights", spec);
    tokenizer_ = Tokenizer::load((dir_ / "model").string());
  }

  // The sum of the reference log-probabilities of the option's tokens after
  // the default prompt (the question, its lettered options, "\n答え：").
  double expected_score(const Item& item, const std::string& option) const {
    std::string context = item.question;
    for (size_t i = 0; i < item.options.size(); ++i) context += "\n" + std::string(1, 'A' + i) + ". " + item.options[i];
    context += "\n答え：";
    const auto head = tokenizer_->encode(context);
    const auto all = tokenizer_->encode(context + option);
    EXPECT_TRUE(std::equal(head.begin(), head.end(), all.begin())) << "a token spans the context and the option";
    const auto logits = test::reference_logits(weights_, std::vector<int>(all.begin(), all.end()));
    double sum = 0;
    for (size_t i = head.size(); i < all.size(); ++i) {
      const auto& row = logits[i - 1];
      const double best = *std::max_element(row.begin(), row.end());
      double total = 0;
      for (const double logit : row) total += std::exp(logit - best);
      sum += row[static_cast<size_t>(all[i])] - best - std::log(total);
    }
    return sum;
  }

  // Writes the data set with the gold answer of item i set by `gold(i)`.
  void write_data(const std::function<char(size_t)>& gold) const {
    std::ofstream out(dir_ / "mc.jsonl");
    for (size_t i = 0; i < kItems.size(); ++i) {
      out << json{{"id", i}, {"question", kItems[i].question}, {"options", kItems[i].options},
                  {"answer", std::string(1, gold(i))}}
                     .dump()
          << "\n";
    }
  }

  test::RunResult eval(const std::string& output, const std::string& flags) const {
    return test::run_rvec("eval --endpoint " + server_->url() + " --model tiny --data " + (dir_ / "mc.jsonl").string() +
                          " --choices options -o " + (dir_ / output).string() + " --json " + flags);
  }

  std::vector<json> records(const std::string& output) const {
    std::vector<json> out;
    std::ifstream in(dir_ / output);
    for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
    const auto id = [](const json& record) { return std::stoi(record["id"].get<std::string>()); };
    std::sort(out.begin(), out.end(), [&](const json& a, const json& b) { return id(a) < id(b); });
    return out;
  }

  TempDir dir_;
  std::unique_ptr<test::ServerProcess> server_;
  test::TinyModel weights_;
  std::shared_ptr<const Tokenizer> tokenizer_;
};

// Gold is the reference's pick for even items and another option for odd
// ones, so the accuracy must be exactly one half, and every record must name
// the reference's pick and hold each option's reference score.
TEST_F(ScoredEval, PicksTheOptionTheReferenceFindsLikeliest) {
  for (const char* score : {"logprob", "logprob_per_byte"}) {
    const bool per_byte = std::string(score) == "logprob_per_byte";
    std::vector<std::vector<double>> expected;
    std::vector<size_t> pick;
    for (const auto& item : kItems) {
      std::vector<double> scores, values;
      for (const auto& option : item.options) {
        scores.push_back(expected_score(item, option));
        values.push_back(per_byte ? scores.back() / static_cast<double>(option.size()) : scores.back());
      }
      expected.push_back(scores);
      pick.push_back(static_cast<size_t>(std::max_element(values.begin(), values.end()) - values.begin()));
    }
    write_data([&](size_t i) {
      const size_t gold = i % 2 == 0 ? pick[i] : (pick[i] + 1) % kItems[i].options.size();
      return static_cast<char>('A' + gold);
    });
    const std::string output = std::string(score) + ".jsonl";
    const auto run = eval(output, std::string("--score ") + score);
    ASSERT_EQ(run.exit_code, 0) << run.output;
    EXPECT_EQ(json::parse(run.output)["correct_in_this_run"], kItems.size() / 2) << run.output;
    const auto written = records(output);
    ASSERT_EQ(written.size(), kItems.size());
    for (size_t i = 0; i < kItems.size(); ++i) {
      const json& record = written[i];
      EXPECT_EQ(record["score"], score);
      EXPECT_EQ(record["extracted"], std::string(1, static_cast<char>('A' + pick[i]))) << record.dump();
      EXPECT_EQ(record["response"], kItems[i].options[pick[i]]);
      EXPECT_EQ(record["verdict"], i % 2 == 0 ? "correct" : "wrong");
      ASSERT_EQ(record["option_logprobs"].size(), kItems[i].options.size());
      for (size_t k = 0; k < kItems[i].options.size(); ++k) {
        EXPECT_NEAR(record["option_logprobs"][k].get<double>(), expected[i][k], 1e-3) << "item " << i << ", option " << k;
        EXPECT_EQ(record["option_bytes"][k], kItems[i].options[k].size());
      }
    }
    // rvec grade regrades a scored record from its option scores, in any mode.
    const auto graded = test::run_rvec("grade " + (dir_ / output).string() + " --mode lenient -o " +
                                       (dir_ / ("graded-" + output)).string());
    ASSERT_EQ(graded.exit_code, 0) << graded.output;
    const auto regraded = records("graded-" + output);
    for (size_t i = 0; i < kItems.size(); ++i) EXPECT_EQ(regraded[i]["verdict"], written[i]["verdict"]) << i;
  }
}

// A server without completions logprobs (here: one answering a completion
// with no logprobs, and one without /v1/completions at all) gives no score:
// every item fails and the run names why.
TEST_F(ScoredEval, AServerWithoutEchoedLogprobsGivesNoScore) {
  write_data([](size_t) { return 'A'; });
  const test::LocalHttpServer plain([](httplib::Server& routes) {
    routes.Post("/v1/completions", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"choices": [{"index": 0, "text": "x", "logprobs": null}]})", "application/json");
    });
  });
  const auto run = [&](const std::string& endpoint, const std::string& output) {
    return test::run_rvec("eval --endpoint " + endpoint + " --model tiny --data " + (dir_ / "mc.jsonl").string() +
                          " --choices options -o " + (dir_ / output).string() +
                          " --score logprob --retries 1 --retry-base-ms 5");
  };
  const auto no_logprobs = run(plain.url(), "a.jsonl");
  EXPECT_NE(no_logprobs.exit_code, 0);
  EXPECT_NE(no_logprobs.output.find("is not a completion with echoed logprobs (choices[0] has no logprobs)"),
            std::string::npos)
      << no_logprobs.output;
  EXPECT_NE(no_logprobs.output.find("no score is reported"), std::string::npos) << no_logprobs.output;
  const auto no_route = run(plain.url() + "/elsewhere/v1/chat/completions", "b.jsonl");
  EXPECT_NE(no_route.exit_code, 0);
  EXPECT_NE(no_route.output.find("/elsewhere/v1/completions: HTTP 404"), std::string::npos) << no_route.output;
}

TEST_F(ScoredEval, MisuseIsAUsageError) {
  write_data([](size_t) { return 'A'; });
  const auto bogus = eval("x.jsonl", "--score likelihood");
  EXPECT_EQ(bogus.exit_code, 2);
  EXPECT_NE(bogus.output.find("--score must be generate, logprob or logprob_per_byte"), std::string::npos) << bogus.output;
  const auto samples = eval("y.jsonl", "--score logprob -k 3");
  EXPECT_EQ(samples.exit_code, 2);
  EXPECT_NE(samples.output.find("--samples 1"), std::string::npos) << samples.output;
  const auto no_choices = test::run_rvec("eval --endpoint " + server_->url() + " --model tiny --data " +
                                         (dir_ / "mc.jsonl").string() + " -o " + (dir_ / "z.jsonl").string() +
                                         " --score logprob");
  EXPECT_EQ(no_choices.exit_code, 2);
  EXPECT_NE(no_choices.output.find("name them with --choices"), std::string::npos) << no_choices.output;
}

}  // namespace
}  // namespace rvec
