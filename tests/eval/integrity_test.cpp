// The integrity of results files through the real CLI: grade and report
// agree, repeated and mixed records are caught, wrong field types are named,
// an empty file is refused, and a results file has one writer at a time.
// (Malformed completions and failed runs are in eval_test.cpp, which has the
// fault-injecting server.)
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.hpp"

namespace rvec {
namespace {

using nlohmann::json;
using test::TempDir;

json record(const std::string& id, int sample, const std::string& response, const std::string& run = "r1") {
  return {{"id", id}, {"sample", sample}, {"label", "w=0"}, {"w", 0}, {"run", run}, {"answer", "7"},
          {"response", response}, {"temperature", 0.6}, {"model", "m"}};
}

std::string write_lines(const TempDir& dir, const std::string& name, const std::vector<json>& records) {
  std::ofstream out(dir / name);
  for (const auto& r : records) out << r.dump() << "\n";
  return (dir / name).string();
}

// 12 problems x 4 samples, all correct.
std::vector<json> twelve_by_four() {
  std::vector<json> records;
  for (int i = 0; i < 12; ++i) {
    for (int s = 0; s < 4; ++s) records.push_back(record(fmt::format("p{:02}", i), s, "答えは \\boxed{7}"));
  }
  return records;
}

// A reasoning model cut off before it answered: the content is empty and the
// answer stands in the reasoning. grade once said no_answer, report correct.
TEST(Integrity, GradeAndReportAgreeOnAnEmptyResponseWithReasoning) {
  TempDir dir;
  json r = record("p1", 0, "");
  r["reasoning"] = "3 + 4 = 7, so the answer is \\boxed{7}";
  const auto path = write_lines(dir, "w0.jsonl", {r});
  const auto graded = test::run_rvec("grade " + path + " --json");
  ASSERT_EQ(graded.exit_code, 0) << graded.output;
  EXPECT_EQ(json::parse(graded.output)["verdicts"]["correct"], 1) << graded.output;
  const auto report = test::run_rvec("report " + path + " --json");
  ASSERT_EQ(report.exit_code, 0) << report.output;
  EXPECT_EQ(json::parse(report.output)["groups"][0]["avg_at_k"], 1.0) << report.output;
}

// Two evals appended to one file: a file scoring 1.000 with 4 wrong copies of
// one row once reported 0.958, still "12x4".
TEST(Integrity, ReportRefusesARepeatedSampleWithAnotherAnswerNamingTheRows) {
  TempDir dir;
  auto records = twelve_by_four();
  for (int copy = 0; copy < 4; ++copy) records.push_back(record("p03", 1, "答えは \\boxed{5}"));
  const auto path = write_lines(dir, "w0.jsonl", records);
  const auto report = test::run_rvec("report " + path);
  EXPECT_EQ(report.exit_code, 4) << report.output;
  EXPECT_NE(report.output.find(path + ":14 and " + path + ":49 both hold problem p03 sample 1 with different answers"),
            std::string::npos)
      << report.output;
}

TEST(Integrity, ReportCountsAnExactRepeatOnceAndWarnsNamingTheRows) {
  TempDir dir;
  auto records = twelve_by_four();
  records.push_back(records[0]);
  records.push_back(records[5]);
  const auto path = write_lines(dir, "w0.jsonl", records);
  const auto report = test::run_rvec("report " + path);
  ASSERT_EQ(report.exit_code, 0) << report.output;
  EXPECT_NE(report.output.find("2 row(s) repeat a (problem, sample) already read and are counted once: " + path +
                               ":49 repeats " + path + ":1 (problem p00, sample 0); " + path + ":50 repeats " + path +
                               ":6 (problem p01, sample 1)"),
            std::string::npos)
      << report.output;
  EXPECT_NE(report.output.find("1.000 [1.000, 1.000]"), std::string::npos) << report.output;
  EXPECT_NE(report.output.find("12x4"), std::string::npos) << report.output;
  const auto as_json = test::run_rvec("report " + path + " --json");
  EXPECT_EQ(json::parse(as_json.output)["warnings"].size(), 1u) << as_json.output;
}

TEST(Integrity, ReportRefusesOneLabelFromTwoRunsNamingBothSettings) {
  TempDir dir;
  const auto first = write_lines(dir, "a.jsonl", {record("p1", 0, "\\boxed{7}")});
  json other = record("p2", 0, "\\boxed{7}", "r2");
  other["temperature"] = 0.1;
  const auto second = write_lines(dir, "b.jsonl", {other});
  const auto report = test::run_rvec("report " + first + " " + second);
  EXPECT_EQ(report.exit_code, 4) << report.output;
  EXPECT_NE(report.output.find("label \"w=0\": " + first + ":1 and " + second +
                               ":1 come from different runs (temperature 0.6 vs 0.1)"),
            std::string::npos)
      << report.output;
}

TEST(Integrity, WrongFieldTypesAreNamedWithFileLineAndField) {
  TempDir dir;
  struct Case {
    const char* field;
    json value;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"completion_tokens", "many", R"(field "completion_tokens" must be an integer, not "many")"},
      {"sample", 1.5, R"(field "sample" must be an integer, not 1.5)"},
      {"w", "0.5", R"(field "w" must be a number, not "0.5")"},
      {"reasoning", json::array({"a"}), R"(field "reasoning" must be a string, not an array)"},
      {"verdict", "maybe", R"(field "verdict" must be correct, wrong, no_answer or error, not "maybe")"},
      {"kind", "essay", R"(field "kind" must be "integer" or "choice", not "essay")"},
      {"response", 12, R"(field "response" must be a string, not 12)"},
  };
  for (const auto& [field, value, message] : cases) {
    json bad = record("p2", 0, "\\boxed{7}");
    bad[field] = value;
    write_lines(dir, "bad.jsonl", {record("p1", 0, "\\boxed{7}"), bad});
    const std::string path = (dir / "bad.jsonl").string();
    for (const char* command : {"report ", "grade "}) {
      const auto run = test::run_rvec(command + path);
      EXPECT_EQ(run.exit_code, 4) << command << field << ": " << run.output;
      EXPECT_NE(run.output.find(path + ":2: " + message), std::string::npos) << command << field << ": " << run.output;
      EXPECT_EQ(run.output.find("internal error"), std::string::npos) << run.output;
    }
  }
}

TEST(Integrity, GradeRefusesAnEmptyFileAsReportDoes) {
  TempDir dir;
  test::write_file(dir / "empty.jsonl", "\n");
  for (const char* command : {"grade ", "report "}) {
    const auto run = test::run_rvec(command + (dir / "empty.jsonl").string());
    EXPECT_EQ(run.exit_code, 4) << command << run.output;
    EXPECT_NE(run.output.find("no records in " + (dir / "empty.jsonl").string()), std::string::npos) << run.output;
  }
}

// Two evals writing one results file once gave 96 rows, 48 of them twice:
// the file is locked while a run writes it.
TEST(Integrity, ASecondEvalOnTheSameResultsFileRefusesToStart) {
  TempDir dir;
  test::write_file(dir / "q.jsonl", R"({"id": "a", "problem": "1+1", "answer": "2"})" "\n");
  const auto results = dir / "results.jsonl";
  const int fd = ::open(results.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);  // as a running rvec eval holds it
  const auto run = test::run_rvec("eval --endpoint http://127.0.0.1:9 --model m --data " + (dir / "q.jsonl").string() +
                                  " -o " + results.string() + " --retries 0 --timeout 1");
  ::close(fd);
  EXPECT_EQ(run.exit_code, 2) << run.output;
  EXPECT_NE(run.output.find(results.string() + ": another rvec eval is writing this file"), std::string::npos)
      << run.output;
  EXPECT_EQ(test::read_file(results), "");
}

TEST(Integrity, AResultsFileThatIsAFifoIsRefusedAtOnce) {
  TempDir dir;
  test::write_file(dir / "q.jsonl", R"({"id": "a", "problem": "1+1", "answer": "2"})" "\n");
  const auto results = dir / "results.jsonl";
  ASSERT_EQ(::mkfifo(results.c_str(), 0644), 0);
  const auto run = test::run_shell("timeout 20 " RVEC_CLI_PATH " eval --endpoint http://127.0.0.1:9 --model m --data " +
                                   (dir / "q.jsonl").string() + " -o " + results.string());
  EXPECT_EQ(run.exit_code, 4) << run.output;
  EXPECT_NE(run.output.find(results.string() + ": not a regular file"), std::string::npos) << run.output;
}

}  // namespace
}  // namespace rvec
