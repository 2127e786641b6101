// `rvec report`: results files (one per model or w) -> a table, a JSON file
// with every number, a plot of accuracy and Japanese share against w, and a
// self-contained HTML page with every response (report_html.hpp).
//
// Responses are regraded in the chosen mode, so one run's records can be
// reported strictly, leniently or with the paper's substring test. Records
// are grouped by benchmark, then by label; each benchmark gets its own
// report, and several benchmarks also a summary (one row per label).
//
// Integrity: within one label, two records of one (problem, sample) are
// one record read twice (dropped with a warning naming the rows) when they
// hold the same answer, and refused otherwise; records of different runs
// (`run` fingerprints: another temperature, model, prompt...) are refused,
// naming both rows and the settings that differ.
//
// All functions are pure apart from the file reading and writing named.
#pragma once

#include <map>
#include <optional>
#include <span>
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
  std::string style_pattern;        // regex: a response that matches "keeps the target's style"
};

// One sample as graded for the report, with what the HTML drill-down shows.
struct GradedSample {
  int index = 0;
  Verdict verdict = Verdict::kNoAnswer;
  Verdict substring_verdict = Verdict::kNoAnswer;
  std::optional<std::string> extracted;
  std::string rule;
  double japanese = 0;
  int64_t tokens = 0;
  bool cut_off = false;
  bool steps = false;
  std::optional<std::pair<size_t, size_t>> style;  // byte range of the style pattern's match
  std::string response, reasoning;
};

struct ProblemSamples {
  std::string gold, question;
  TaskKind kind = TaskKind::kInteger;
  std::vector<GradedSample> samples;  // by sample index
  double accuracy() const;
};

// Every sample of one label (one model or w) on one benchmark, by problem id.
struct SampleGroup {
  std::string label;
  std::optional<double> w;
  std::string vector;
  std::map<std::string, ProblemSamples> problems;
};

struct GroupReport {
  std::string label;
  std::optional<double> w;
  std::string vector;  // the vector w scales: "" for the reasoning vector, else a control's name
  size_t problems = 0, samples = 0, errors = 0;
  double avg = 0;
  Interval avg_ci;
  std::string avg_ci_method;  // "wilson" (one sample per problem) or "bootstrap"
  double maj = 0;
  std::map<int, double> pass;  // k -> pass@k (unbiased), for k up to the fewest samples of a problem
  std::optional<double> delta;  // avg - baseline avg over shared problems
  Interval delta_ci;
  double delta_p = 1;           // two-sided bootstrap p-value of the gain
  bool holm_significant = false;  // the gain holds at family-wise 5 % (Holm, over every gain in the report)
  double no_answer = 0, japanese = 0, mostly_japanese = 0, mean_tokens = 0, cut_off = 0;
  std::optional<double> steps;  // share of responses matching the step pattern
  std::optional<double> style;  // share of responses matching the style pattern
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

// One benchmark's report.
struct Report {
  std::string benchmark;            // "" when the records do not name one
  std::vector<GroupReport> groups;  // with a w first (reasoning vector, then each control, by w), then by label
  std::vector<SampleGroup> samples;  // the graded samples, in the order of `groups`
  std::string baseline;
  std::string mode;
  size_t comparisons = 0;           // gains against the baseline (the Holm family)
  double dev_fraction = 0;
  size_t dev_problems = 0, test_problems = 0;
  // With a dev split: the reasoning vector's choice first (among its w, 0
  // included), then each control's (among its own w).
  std::vector<HeldOutChoice> choices;
  std::vector<std::string> warnings;  // rows dropped as duplicates
  bool has_steps = false, has_style = false;
};

// The groups with a w, one series per vector in the groups' order (the
// reasoning vector first; `groups` sorted by vector, then w).
struct Series {
  std::string vector;
  std::vector<const GroupReport*> points;
};
std::vector<Series> series_by_vector(const std::vector<GroupReport>& groups);

// One report per benchmark in the inputs, by benchmark name.
std::vector<Report> build_reports(const ReportOptions& options);
// The report of inputs that hold one benchmark (refused otherwise).
Report build_report(const ReportOptions& options);

// A table as the text report prints it and the HTML report shows it.
struct TextTable {
  struct Column {
    std::string header;
    int width = 6;
    int gap = 1;       // spaces before the column in text
    bool left = false;  // aligned left (else right)
  };
  std::vector<Column> columns;
  std::vector<std::vector<std::string>> rows;  // one cell per column
};
// One row per group: avg@k, gain, Holm flag, maj@k, pass@k, rates.
TextTable report_table(const Report& report);
// One row per label, one column per benchmark: avg@k [95% CI].
TextTable summary_table(std::span<const Report> reports);
// "13 gain(s) compared with w=0; holm: yes = ..."
std::string comparisons_note(const Report& report);

// "held-out choice: ..." and one "chosen on dev: ..." line per vector ("" without a dev split).
std::string held_out_text(const Report& report);

// The table and held-out lines of one report.
std::string format_report(const Report& report);
// Each report under its benchmark's name, then (for several) the summary.
std::string format_reports(std::span<const Report> reports);
// summary_table as text.
std::string format_summary(std::span<const Report> reports);
nlohmann::json report_json(const Report& report);
// One report's JSON, or {"benchmarks": [...], "summary": [...]} for several.
nlohmann::json reports_json(std::span<const Report> reports);
// Accuracy and Japanese share against w with 95 % error bars.
std::string report_svg(const Report& report);
// "out/report.svg" for benchmark "ja" -> "out/report-ja.svg" (characters of
// the name other than letters, digits, '.', '-' and '_' become '_').
std::string path_for_benchmark(const std::string& path, const std::string& benchmark);
// Writes `text` to `path` through a temporary file renamed into place.
void write_file_atomically(const std::string& path, const std::string& text);
// Writes the plot to `svg_path`, and a PNG beside it when rsvg-convert is installed.
void write_report_plot(const Report& report, const std::string& svg_path);

}  // namespace rvec
