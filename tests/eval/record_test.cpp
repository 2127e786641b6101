// EvalRecord: the one results record, to and from JSON, and how it is graded.
#include "eval/record.hpp"

#include <gtest/gtest.h>

#include <tuple>

#include "base/error.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

using nlohmann::json;

TEST(EvalRecord, EveryFieldAndEveryUnknownFieldSurvivesARoundTrip) {
  EvalRecord r;
  r.id = "p1";
  r.sample = 3;
  r.run = "abc";
  r.label = "w=0.5";
  r.benchmark = "aime";
  r.model = "m";
  r.w = 0.5;
  r.vector = "control";
  r.seed = 42;
  r.temperature = 0.6;
  r.top_p = 0.95;
  r.max_tokens = 128;
  r.prompt = "問題";
  r.response = "答えは7です。";
  r.reasoning = "3 + 4";
  r.finish_reason = "stop";
  r.prompt_tokens = 10;
  r.completion_tokens = 20;
  r.latency_s = 1.5;
  r.answer = "7";
  r.kind = TaskKind::kChoice;
  r.extracted = "7";
  r.rule = "answer_is";
  r.verdict = Verdict::kCorrect;
  r.mode = "strict";
  r.error = "none";
  r.extra["source"] = "vllm-script";
  const json j = r.to_json();
  EXPECT_EQ(j["source"], "vllm-script");
  EXPECT_EQ(j["verdict"], "correct");
  EXPECT_EQ(j["kind"], "choice");
  EXPECT_EQ(EvalRecord::from_json(j, "x").to_json(), j);
}

// rvec eval --score: the pick comes from the option scores, in any grading
// mode, by the sum or per byte of each option.
TEST(EvalRecord, AScoredRecordIsGradedFromItsOptionScores) {
  json j = {{"id", "q"},          {"response", "long answer"},       {"answer", "1"},   {"kind", "choice"},
            {"score", "logprob"}, {"option_logprobs", {-3.0, -2.0, -6.0}}, {"option_bytes", {1, 2, 11}}};
  EvalRecord r = EvalRecord::from_json(j, "x");
  for (const auto mode : {GradeMode::kStrict, GradeMode::kLenient, GradeMode::kSubstring}) {
    r.regrade(mode);
    EXPECT_EQ(r.extracted, "B");
    EXPECT_EQ(r.rule, "logprob");
    EXPECT_EQ(r.verdict, Verdict::kCorrect);  // gold 1 is B
  }
  EXPECT_EQ(EvalRecord::from_json(r.to_json(), "x").to_json(), r.to_json());
  j["score"] = "logprob_per_byte";  // -3/1, -2/2, -6/11: C
  r = EvalRecord::from_json(j, "x");
  r.regrade(GradeMode::kStrict);
  EXPECT_EQ(r.extracted, "C");
  EXPECT_EQ(r.verdict, Verdict::kWrong);
  for (const auto& [field, value, message] : std::vector<std::tuple<const char*, json, std::string>>{
           {"score", "likelihood", "field \"score\" must be \"logprob\" or \"logprob_per_byte\""},
           {"option_logprobs", json::array(), "a record with \"score\" needs \"option_logprobs\", a non-empty list of numbers"},
           {"option_logprobs", {-1.0, "x", -2.0}, "a record with \"score\" needs \"option_logprobs\", a non-empty list of numbers"},
           {"option_bytes", {1, 2}, "\"option_bytes\" must list a byte count for each of the 3 options"},
           {"option_bytes", {1, -2, 3}, "\"option_bytes\" must list a byte count for each of the 3 options"}}) {
    json bad = j;
    bad[field] = value;
    try {
      EvalRecord::from_json(bad, "r.jsonl:4");
      ADD_FAILURE() << field << " " << value.dump();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("r.jsonl:4: " + message), std::string::npos) << e.what();
    }
  }
}

TEST(EvalRecord, AForeignRecordNeedsOnlyIdResponseAndAnswer) {
  const auto r = EvalRecord::from_json(json{{"id", 17}, {"response", "\\boxed{7}"}, {"answer", 7}}, "x");
  EXPECT_EQ(r.id, "17");
  EXPECT_EQ(r.answer, "7");
  EXPECT_FALSE(r.sample.has_value());
  EXPECT_FALSE(r.verdict.has_value());
  for (const char* missing : {"id", "response", "answer"}) {
    json j = {{"id", 1}, {"response", ""}, {"answer", "7"}};
    j.erase(missing);
    try {
      EvalRecord::from_json(j, "f.jsonl:3");
      FAIL() << missing;
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), std::string("f.jsonl:3: the record has no \"") + missing + "\"");
      EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
    }
  }
}

TEST(EvalRecord, TheReasoningIsGradedWhenTheResponseIsEmpty) {
  EvalRecord r = EvalRecord::from_json(json{{"id", "a"}, {"response", ""}, {"reasoning", "so \\boxed{7}"}, {"answer", "7"}}, "x");
  r.regrade(GradeMode::kStrict);
  EXPECT_EQ(r.verdict, Verdict::kCorrect);
  EXPECT_EQ(r.rule, "boxed");
  r.response = "答えは 5";
  r.regrade(GradeMode::kStrict);
  EXPECT_EQ(r.verdict, Verdict::kWrong);  // a response of its own: the reasoning is not graded
}

TEST(EvalRecord, AFailedRequestStaysAnErrorInEveryMode) {
  EvalRecord r = EvalRecord::from_json(json{{"id", "a"}, {"response", ""}, {"answer", "7"}, {"verdict", "error"},
                                            {"error", "HTTP 400"}},
                                       "x");
  for (const auto mode : {GradeMode::kStrict, GradeMode::kLenient, GradeMode::kSubstring}) {
    r.regrade(mode);
    EXPECT_EQ(r.verdict, Verdict::kError);
  }
}

TEST(EvalRecord, ReadingAFileSkipsBlankLinesAndNamesTheLineOfABadOne) {
  test::TempDir dir;
  test::write_file(dir / "r.jsonl", "{\"id\": 1, \"response\": \"\", \"answer\": \"7\"}\n\n{\"id\": 2, \"response\": \"\"\n");
  const std::string path = (dir / "r.jsonl").string();
  try {
    read_results_file(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(path + ":3: not valid JSON", 0), 0u) << e.what();
  }
  test::write_file(dir / "r.jsonl", "{\"id\": 1, \"response\": \"\", \"answer\": \"7\", \"w\": 1e400}\n");
  try {
    read_results_file(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), path + ":1: not valid JSON (number overflow parsing '1e400')");
  }
  test::write_file(dir / "r.jsonl", "{\"id\": 1, \"response\": \"\", \"answer\": \"7\"}\n\n[1]\n");
  try {
    read_results_file(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(path + ":3: not a results record", 0), 0u) << e.what();
  }
  EXPECT_THROW(read_results_file(dir.path().string()), Error);  // a folder is not a results file
}

}  // namespace
}  // namespace rvec
