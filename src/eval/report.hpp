// `rvec report`: results files (one per model or w) -> a table, a JSON file
// with every number, and a plot of accuracy and Japanese share against w.
//
// Responses are regraded in the chosen mode, so one run's records can be
// reported strictly, leniently or with the paper's substring test.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/grader.hpp"
#include "eval/stats.hpp"

namespace rvec {

struct ReportOptions {
  std::vector<std::string> inputs;  // results JSONL files
  GradeMode mode = GradeMode::kStrict;
  std::string baseline;             // label; default: the group with w = 0, else the first
  double dev_fraction = 0;          // > 0: choose w on dev problems, report on the rest
  uint64_t split_seed = 0;
  uint64_t bootstrap_seed = 12345;
  std::string step_pattern;         // regex: a response that matches "shows its steps"
};

struct GroupReport {
  std::string label;
  std::optional<double> w;
  std::string vector;  // the vector w scales: "" for the reasoning vector, else a control's name
  size_t problems = 0, samples = 0, errors = 0;
  double avg = 0;
  Interval avg_ci;
  std::string avg_ci_method;  // "wilson" (one sample per problem) or "bootstrap"
  double maj = 0, pass = 0;
  std::optional<double> delta;  // avg - baseline avg over shared problems
  Interval delta_ci;
  double no_answer = 0, japanese = 0, mostly_japanese = 0, mean_tokens = 0, cut_off = 0;
  std::optional<double> steps;  // share of responses matching the step pattern
  Interval japanese_ci;
  double substring_avg = 0, substring_disagreement = 0;
  // With a dev split:
  double dev_avg = 0, test_avg = 0;
  Interval test_ci;
};

// The w chosen on the dev problems for one vector, scored on the test problems.
struct HeldOutChoice {
  std::string vector;  // "" for the reasoning vector
  std::string label;   // the chosen group
  std::optional<double> test_delta;  // vs the baseline on test; none when the baseline itself was chosen
  Interval test_delta_ci;
};

struct Report {
  std::vector<GroupReport> groups;  // with a w first (reasoning vector, then each control, by w), then by label
  std::string baseline;
  std::string mode;
  double dev_fraction = 0;
  size_t dev_problems = 0, test_problems = 0;
  // With a dev split: the reasoning vector's choice first (among its w, 0
  // included), then each control's (among its own w).
  std::vector<HeldOutChoice> choices;
};

Report build_report(const ReportOptions& options);
std::string format_report(const Report& report);
nlohmann::json report_json(const Report& report);
// Accuracy and Japanese share against w with 95 % error bars.
std::string report_svg(const Report& report);
// Writes `text` to `path` through a temporary file renamed into place.
void write_file_atomically(const std::string& path, const std::string& text);
// Writes the plot to `svg_path`, and a PNG beside it when rsvg-convert is installed.
void write_report_plot(const Report& report, const std::string& svg_path);

}  // namespace rvec
