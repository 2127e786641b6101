// Benchmark files users bring: JSONL, a JSON array, CSV or TSV (by extension),
// with the id, question and answer fields nameable. Multiple-choice rows list
// their options in `choices`: one field per option, or one field holding a
// JSON list of options; the question shown to the model is then the question
// followed by "A. ...", "B. ...".
//
// Defaults fit AIME-style JSONL (`id`, `problem`, `answer`) and MGSM-style
// TSV without a header (question<TAB>answer). Every problem must have a
// unique id (the line number when the file has none) and a non-empty question
// and answer; errors name the file and line.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "eval/grader.hpp"

namespace rvec {

struct DatasetFields {
  std::string id = "id";                 // optional in the file
  std::string question;                  // empty: "problem", else "question"
  std::string answer = "answer";
  std::vector<std::string> choices;      // multiple choice option fields, or one field with a list
};

// Options of one multiple-choice problem: lettered A to E, as the grader reads them.
inline constexpr size_t kMaxOptions = 5;

struct Problem {
  std::string id;
  std::string question;  // with the options appended for multiple choice
  std::string answer;
  std::vector<std::string> options;  // multiple choice: the options' texts, in order
};

struct Dataset {
  std::string path;
  TaskKind kind = TaskKind::kInteger;
  std::vector<Problem> problems;
};

Dataset load_dataset(const std::string& path, const DatasetFields& fields);

// Splits problem ids into dev and test by a seeded hash of each id, so the
// split does not depend on file order: the same ids land in dev every time.
bool in_dev_split(const std::string& id, double dev_fraction, uint64_t seed);

}  // namespace rvec
