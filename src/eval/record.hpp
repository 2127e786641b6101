// One results record: a line of the JSONL file `rvec eval` writes, `rvec
// grade` regrades, `rvec report` reads and `rvec sweep` produces (the field
// list is in docs/evaluation.md). Every reader and writer of results goes
// through EvalRecord, so they agree on what a field means and how a record
// is graded.
//
// Reading is strict about types and lenient about presence: a results file
// from another tool needs only `id`, `response` and `answer`; a field of the
// wrong type is refused naming the file, line and field; fields rvec does
// not know are kept as they are (`extra`) and written back by to_json().
//
// Plain values; no shared state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/grader.hpp"

namespace rvec {

// EvalRecord::score values.
inline constexpr const char* kScoreSum = "logprob";
inline constexpr const char* kScorePerByte = "logprob_per_byte";

struct EvalRecord {
  std::string id;
  std::optional<int> sample;      // absent in files from other tools
  std::string run;                // fingerprint of everything that changes answers ("" if unknown)
  std::string label;              // "" if the file has none
  std::string benchmark;          // the data set's name ("" if unknown)
  std::string model;
  std::optional<double> w;
  std::string vector;             // "" for the reasoning vector
  std::optional<uint64_t> seed;
  std::optional<double> temperature, top_p;
  std::optional<int64_t> max_tokens;
  std::string prompt;
  std::string response;
  std::string reasoning;          // the server's reasoning_content, if any
  std::string finish_reason;
  int64_t prompt_tokens = 0, completion_tokens = 0;
  std::optional<double> latency_s;
  std::string answer;             // the gold answer
  TaskKind kind = TaskKind::kInteger;
  std::optional<std::string> extracted;
  std::string rule;
  std::optional<Verdict> verdict;  // absent until graded
  std::string mode;               // the grading mode of `verdict`
  std::string error;              // why the request failed (verdict error)
  // Log-likelihood scoring (`rvec eval --score`): how the option was picked
  // ("logprob": the highest sum of its tokens' log-probabilities after the
  // prompt; "logprob_per_byte": the highest sum per UTF-8 byte of the option,
  // lm-evaluation-harness's acc_norm), and each option's sum and bytes, in
  // option order. "" and empty for a generated response.
  std::string score;
  std::vector<double> option_logprobs;
  std::vector<int64_t> option_bytes;
  nlohmann::json extra = nlohmann::json::object();  // fields rvec does not know

  // What the grader reads: the response, or the reasoning when the response
  // is empty (a reasoning model cut off before it answered).
  const std::string& graded_text() const;
  // With `score`: the index of the option it picks (the first of equals).
  size_t picked_option() const;
  bool failed() const { return verdict == Verdict::kError; }
  bool cut_off() const { return finish_reason == "length"; }

  // Grades graded_text() in `mode` and records the outcome; a failed request
  // stays an error (there is no answer to grade).
  void regrade(GradeMode mode);
  // The outcome of `mode` without changing the record.
  Grade grade(GradeMode mode) const;

  nlohmann::json to_json() const;
  // `where` ("results.jsonl:12") prefixes every error.
  static EvalRecord from_json(const nlohmann::json& j, std::string_view where);
};

// A record with the place it was read from.
struct ResultsRow {
  EvalRecord record;
  std::string where;  // "path:line"
};

// Every record of a results file, blank lines skipped. Refuses (naming file,
// line and field) a line that is not JSON, not an object, lacks a required
// field or has one of the wrong type.
std::vector<ResultsRow> read_results_file(const std::string& path);

const char* task_kind_name(TaskKind kind);

}  // namespace rvec
