// rvec eval's client and runner against a fault-injecting server, resume
// after a crash, and the whole eval -> grade -> report path on a live rvec serve.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "base/error.hpp"
#include "eval/runner.hpp"
#include "serve/serve_util.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

using nlohmann::json;
using test::TempDir;

// Answers "答え：<gold>" after injecting the fault named in the question:
// RATE<n> (n times 429), DOWN<n> (n times 503), GARBAGE (one unparseable 200),
// SLOW (the first attempt outlasts the client's timeout), BAD (always 400),
// TOOLONG (always 400 with 300 bytes of Japanese text, no JSON), NOMSG and
// NUMBER (always a malformed completion: no message; content 12).
class FaultServer {
 public:
  explicit FaultServer(std::map<std::string, std::string> answers) : answers_(std::move(answers)) {}
  std::string url() const { return server_.url(); }
  size_t requests() const { return requests_; }

 private:
  void handle(const httplib::Request& req, httplib::Response& res) {
    ++requests_;
    const auto body = json::parse(req.body);
    const std::string content = body["messages"].back()["content"];
    int attempt = 0;
    {
      std::lock_guard lock(mutex_);
      attempt = attempts_[req.body]++;
    }
    std::string question, answer;
    for (const auto& [q, a] : answers_) {
      if (content.find(q) != std::string::npos) question = q, answer = a;
    }
    const auto fault = [&](const std::string& name, int times) { return question.find(name) != std::string::npos && attempt < times; };
    if (fault("RATE", 2)) return reply(res, 429, R"({"error": {"message": "slow down"}})");
    if (fault("DOWN", 1)) return reply(res, 503, R"({"error": {"message": "loading"}})");
    if (fault("GARBAGE", 1)) return reply(res, 200, "<html>proxy error</html>");
    if (fault("SLOW", 1)) std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    if (question.find("ENDLESS") != std::string::npos) return reply_without_end(res);
    if (question.find("NOMSG") != std::string::npos) return reply(res, 200, R"({"choices": [{"index": 0}]})");
    if (question.find("NUMBER") != std::string::npos) {
      return reply(res, 200, R"({"choices": [{"index": 0, "message": {"role": "assistant", "content": 12}}]})");
    }
    if (question.find("TOOLONG") != std::string::npos) {
      std::string text;
      while (text.size() < 300) text += "文脈が長すぎます。";
      return reply(res, 400, text);
    }
    if (question.find("BAD") != std::string::npos) {
      return reply(res, 400, R"({"error": {"message": "maximum context length exceeded", "type": "invalid_request_error"}})");
    }
    const json ok = {{"choices", {{{"index", 0}, {"message", {{"role", "assistant"}, {"content", "答え：" + answer}}}, {"finish_reason", "stop"}}}},
                     {"usage", {{"prompt_tokens", 10}, {"completion_tokens", 3}}}};
    reply(res, 200, ok.dump());
  }
  static void reply(httplib::Response& res, int status, const std::string& body) {
    res.status = status;
    res.set_content(body, "application/json");
  }
  // A body that never ends, at about 100 MB/s, until the client hangs up.
  static void reply_without_end(httplib::Response& res) {
    res.set_chunked_content_provider("application/json", [](size_t, httplib::DataSink& sink) {
      static const std::string chunk(1 << 20, ' ');
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      return sink.write(chunk.data(), chunk.size());
    });
  }

  std::map<std::string, std::string> answers_;
  std::atomic<size_t> requests_{0};
  std::mutex mutex_;
  std::map<std::string, int> attempts_;
  // Last, so it listens only once the members its handler uses exist, and stops before they go.
  test::LocalHttpServer server_{[this](httplib::Server& routes) {
    routes.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) { handle(req, res); });
  }};
};

// Accepts connections and closes them at once (a crashed proxy).
class ClosingServer {
 public:
  ClosingServer() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    listen(fd_, 64);
    thread_ = std::thread([this] {
      while (true) {
        const int client = accept(fd_, nullptr, nullptr);
        if (client < 0) return;
        close(client);
      }
    });
  }
  ~ClosingServer() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1, port_ = 0;
  std::thread thread_;
};

std::vector<json> read_records(const std::filesystem::path& path) {
  std::vector<json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(json::parse(line));
  }
  return out;
}

const std::map<std::string, std::string> kAnswers = {{"Q1 plain", "12"},   {"Q2 RATE", "7"},   {"Q3 DOWN", "100"},
                                                     {"Q4 GARBAGE", "25"}, {"Q5 SLOW", "3"},   {"Q6 BAD", "9"}};

void write_questions(const std::filesystem::path& path, const std::map<std::string, std::string>& answers = kAnswers) {
  std::ofstream out(path);
  for (const auto& [q, a] : answers) out << json{{"id", q.substr(0, 2)}, {"problem", q}, {"answer", a}}.dump() << "\n";
}

EvalOptions options_for(const std::string& url, const TempDir& dir) {
  EvalOptions o;
  o.data = (dir / "q.jsonl").string();
  o.output = (dir / "results.jsonl").string();
  o.client.endpoint = url;
  o.client.model = "m";
  o.client.timeout_s = 1.0;
  o.client.retries = 3;
  o.client.retry_base_ms = 5;
  o.samples = 2;
  o.concurrency = 3;
  o.label = "w=0";
  o.progress = false;
  return o;
}

TEST(Eval, RetriesTransientFaultsAndRecordsBadRequestsAsItemFailures) {
  TempDir dir;
  write_questions(dir / "q.jsonl");
  FaultServer server(kAnswers);
  const auto summary = run_eval(options_for(server.url(), dir));
  EXPECT_EQ(summary.total, 12u);
  EXPECT_EQ(summary.failed, 2u);  // Q6's two samples
  const auto records = read_records(dir / "results.jsonl");
  ASSERT_EQ(records.size(), 12u);
  for (const auto& r : records) {
    if (r["id"] == "Q6") {
      EXPECT_EQ(r["verdict"], "error");
      EXPECT_NE(r["error"].get<std::string>().find("HTTP 400"), std::string::npos);
    } else {
      EXPECT_EQ(r["verdict"], "correct") << r.dump();
      EXPECT_EQ(r["rule"], "answer_colon");
    }
  }
  // 12 answers + 2x2 rate limits + 2 unavailable + 2 garbage + 2 timeouts.
  EXPECT_EQ(server.requests(), 12u + 4 + 2 + 2 + 2);
}

TEST(Eval, ARunWhereMostRequestsFailReportsNoScore) {
  TempDir dir;
  write_questions(dir / "q.jsonl");
  ClosingServer closing;
  auto o = options_for(closing.url(), dir);
  o.samples = 3;
  try {
    run_eval(o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no score is reported"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(read_records(dir / "results.jsonl").empty());
}

// A server answering {"choices":[{"index":0}]} or content 12 once gave exit 0
// and a score of 0.000 from "no answer" rows: a malformed completion is the
// server's failure, retried and then counted failed, so no score is reported.
TEST(Eval, AMalformedCompletionIsRetriedAndFailsTheRunNeverAnAnswer) {
  for (const auto& [fault, why] : {std::pair{"NOMSG", "(choices[0] has no message)"},
                                   std::pair{"NUMBER", "(the message's content is 12, not a string)"}}) {
    TempDir dir;
    const std::map<std::string, std::string> answers = {{std::string("Q1 ") + fault, "1"}, {std::string("Q2 ") + fault, "2"}};
    write_questions(dir / "q.jsonl", answers);
    FaultServer server(answers);
    auto o = options_for(server.url(), dir);
    o.samples = 4;
    try {
      run_eval(o);
      FAIL() << fault << ": expected an error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("8 of 8 requests failed, so no score is reported"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(std::string("the server's answer is not a chat completion ") + why),
                std::string::npos)
          << e.what();
    }
    EXPECT_TRUE(read_records(dir / "results.jsonl").empty()) << fault;
    EXPECT_EQ(server.requests(), 8u * 4) << fault;  // each sample: the first try and 3 retries
  }
}

// A server whose answer never ends is cut off at a bound, not held in memory
// until the request times out.
TEST(Eval, AnAnswerThatNeverEndsIsCutOffAtABound) {
  TempDir dir;
  const std::map<std::string, std::string> answers = {{"Q1 ENDLESS", "1"}};
  write_questions(dir / "q.jsonl", answers);
  FaultServer server(answers);
  auto o = options_for(server.url(), dir);
  o.samples = 1;
  o.client.retries = 1;
  o.client.timeout_s = 30;
  try {
    run_eval(o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the server's answer is longer than 64 MiB"), std::string::npos) << e.what();
  }
  EXPECT_EQ(server.requests(), 2u);
}

// An all-400 run once ended with "(last error: )".
TEST(Eval, ARunWhereEveryRequestIsRefusedShowsTheLastError) {
  TempDir dir;
  const std::map<std::string, std::string> answers = {{"Q1 BAD", "1"}, {"Q2 BAD", "2"}};
  write_questions(dir / "q.jsonl", answers);
  FaultServer server(answers);
  auto o = options_for(server.url(), dir);
  o.samples = 4;
  try {
    run_eval(o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("(last error: " + server.url() +
                                         "/v1/chat/completions: HTTP 400: maximum context length exceeded)"),
              std::string::npos)
        << e.what();
  }
  const auto records = read_records(dir / "results.jsonl");
  EXPECT_EQ(records.size(), 8u);
  for (const auto& r : records) EXPECT_EQ(r["verdict"], "error");
}

// A refusal whose plain-text body is cut mid-character (at 200 bytes) is
// recorded as valid UTF-8 (it once made the record unwritable).
TEST(Eval, ARefusalWithALongJapaneseBodyIsRecordedAsValidText) {
  TempDir dir;
  const std::map<std::string, std::string> answers = {{"Q1 plain", "12"}, {"Q2 TOOLONG", "3"}};
  write_questions(dir / "q.jsonl", answers);
  FaultServer server(answers);
  const auto summary = run_eval(options_for(server.url(), dir));
  EXPECT_EQ(summary.failed, 2u);
  for (const auto& r : read_records(dir / "results.jsonl")) {
    if (r["id"] != "Q2") continue;
    EXPECT_EQ(r["verdict"], "error");
    EXPECT_NE(r["error"].get<std::string>().find("HTTP 400: 文脈が長すぎます。"), std::string::npos) << r.dump();
  }
}

std::string eval_command(const std::string& url, const TempDir& dir, const std::string& extra = "") {
  return "eval --endpoint " + url + " --model m --data " + (dir / "q.jsonl").string() + " -o " +
         (dir / "results.jsonl").string() + " -k 4 --concurrency 2 --timeout 1 --retry-base-ms 5 --w 0.5 --json " + extra;
}

TEST(Eval, ResumeAfterACrashLosesNothingAndDuplicatesNothing) {
  TempDir dir;
  write_questions(dir / "q.jsonl");
  FaultServer server(kAnswers);
  const auto crashed = test::run_shell("RVEC_TEST_EXIT_AFTER_SAMPLES=5 " RVEC_CLI_PATH " " + eval_command(server.url(), dir));
  EXPECT_EQ(crashed.exit_code, 9) << crashed.output;
  const size_t before = read_records(dir / "results.jsonl").size();
  EXPECT_GE(before, 5u);
  EXPECT_LT(before, 24u);
  {  // a record torn by the crash mid-write
    std::ofstream torn(dir / "results.jsonl", std::ios::app);
    torn << "{\"id\": \"Q1\", \"sam";
  }
  const size_t requests_before = server.requests();
  const auto resumed = test::run_rvec(eval_command(server.url(), dir));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  const auto records = read_records(dir / "results.jsonl");
  ASSERT_EQ(records.size(), 24u);
  std::set<std::pair<std::string, int>> keys;
  for (const auto& r : records) keys.emplace(r["id"], r["sample"]);
  EXPECT_EQ(keys.size(), 24u);
  EXPECT_GE(server.requests() - requests_before, 24u - before);  // only the missing samples (plus retries)
  EXPECT_EQ(json::parse(resumed.output.substr(resumed.output.find('{')))["reused"], before);

  const auto other = test::run_rvec(eval_command(server.url(), dir, "--temperature 0.1"));
  EXPECT_EQ(other.exit_code, 2);
  EXPECT_NE(other.output.find("another configuration"), std::string::npos) << other.output;
}

TEST(Eval, RecordsWithMistypedKeysAreRefusedNotMisread) {
  TempDir dir;
  write_questions(dir / "q.jsonl");
  const auto eval_error = [&](const std::string& record) {
    test::write_file(dir / "results.jsonl", record + "\n");
    try {
      run_eval(options_for("http://127.0.0.1:9", dir));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  // Records read by eval/record.cpp: the field and its problem are named.
  const std::string at = (dir / "results.jsonl").string() + ":1: ";
  const std::string fields = R"("response": "", "answer": "2", )";
  EXPECT_NE(eval_error("{" + fields + R"("id": "Q1", "sample": 4294967296, "run": "x"})").find(at), std::string::npos);
  EXPECT_NE(eval_error("{" + fields + R"("id": "Q1", "sample": -1, "run": "x"})").find(at), std::string::npos);
  EXPECT_NE(eval_error("{" + fields + R"("id": "Q1", "sample": 0, "run": 7})").find(at), std::string::npos);
}

// eval -> grade -> report against a live rvec serve (a random tiny model, so
// the answers are wrong; what matters is that every stage runs and reports).
TEST(Eval, EndToEndAgainstRvecServe) {
  TempDir dir;
  test::write_chat_model(dir / "model");
  test::ServerProcess server(dir / "model", dir / "serve.log");
  ASSERT_TRUE(server.wait_ready()) << test::read_file(dir / "serve.log");
  {
    std::ofstream out(dir / "q.jsonl");
    for (int i = 0; i < 4; ++i) out << json{{"id", i}, {"problem", "2+" + std::to_string(i) + "は？"}, {"answer", std::to_string(2 + i)}}.dump() << "\n";
  }
  const auto eval = [&](const std::string& file, const std::string& flags) {
    return test::run_rvec("eval --endpoint " + server.url() + " --model tiny --data " + (dir / "q.jsonl").string() + " -o " +
                          (dir / file).string() + " -k 2 --temperature 0.8 --max-tokens 8 " + flags);
  };
  for (const auto& [file, flags] : {std::pair{"w0.jsonl", "--w 0"}, std::pair{"w1.jsonl", "--w 1"},
                                    std::pair{"c1.jsonl", "--w 1 --vector control"}}) {
    const auto run = eval(file, flags);
    ASSERT_EQ(run.exit_code, 0) << run.output;
  }
  const auto no_weight = eval("c.jsonl", "--vector control");
  EXPECT_EQ(no_weight.exit_code, 2);
  EXPECT_NE(no_weight.output.find("--vector control needs --w"), std::string::npos) << no_weight.output;
  const auto graded = test::run_rvec("grade " + (dir / "w0.jsonl").string() + " --mode lenient --json");
  ASSERT_EQ(graded.exit_code, 0) << graded.output;
  EXPECT_EQ(json::parse(graded.output)["records"], 8);
  const auto report = test::run_rvec("report " + (dir / "w0.jsonl").string() + " " + (dir / "w1.jsonl").string() + " " +
                                     (dir / "c1.jsonl").string() + " --dev-fraction 0.5 --json-out " +
                                     (dir / "r.json").string() + " --plot " + (dir / "r.svg").string() + " --html " +
                                     (dir / "r.html").string());
  ASSERT_EQ(report.exit_code, 0) << report.output;
  EXPECT_NE(report.output.find("avg@k [95% CI]"), std::string::npos) << report.output;
  const auto numbers = json::parse(test::read_file(dir / "r.json"));
  EXPECT_EQ(numbers["baseline"], "w=0");
  ASSERT_EQ(numbers["groups"].size(), 3u);
  EXPECT_EQ(numbers["groups"][1]["samples"], 8);
  EXPECT_TRUE(numbers["groups"][1].contains("delta_vs_baseline"));
  EXPECT_EQ(numbers["groups"][2]["label"], "control w=1");
  EXPECT_EQ(numbers["groups"][2]["vector"], "control");
  EXPECT_EQ(numbers["held_out"]["controls"][0]["chosen"], "control w=1");
  EXPECT_NE(test::read_file(dir / "r.svg").find("<svg"), std::string::npos);
  EXPECT_NE(test::read_file(dir / "r.html").find("id=\"rvec-data\""), std::string::npos);
}

}  // namespace
}  // namespace rvec
