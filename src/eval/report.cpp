// Reading results for a report, the integrity checks, and the statistics.
// The text, JSON and plot are in report_format.cpp, the HTML page in
// report_html.cpp.
#include "eval/report.hpp"

#include <algorithm>
#include <functional>
#include <numeric>
#include <set>

#include "base/error.hpp"
#include "base/regex.hpp"
#include "eval/dataset.hpp"
#include "eval/record.hpp"

namespace rvec {
namespace {

// Each bootstrap draws from its own stream: the report's seed plus one of these,
// so adding a statistic never changes the intervals of another.
enum BootstrapStream : uint64_t {
  kAccuracyStream = 0,
  kJapaneseShareStream = 1,
  kGainStream = 2,
  kTestAccuracyStream = 3,
  kTestGainStream = 4,
};

// How many repeated rows a warning names before it counts the rest.
constexpr size_t kRowsNamed = 3;

// ---- reading -------------------------------------------------------------------------

// Every record of every input, each labelled (the file's path when the record has no label).
std::vector<ResultsRow> read_rows(const std::vector<std::string>& inputs) {
  std::vector<ResultsRow> rows;
  for (const auto& path : inputs) {
    for (auto& row : read_results_file(path)) {
      if (row.record.label.empty()) row.record.label = path;
      rows.push_back(std::move(row));
    }
  }
  if (rows.empty()) bad_input("no records in {}", fmt::join(inputs, ", "));
  return rows;
}

// Records written before results named their benchmark take the name of the
// records of the same run (a resumed file holds both), else the only name
// the other records use, if they use one.
void name_benchmarks(std::vector<ResultsRow>& rows) {
  std::map<std::string, std::string> benchmark_of_run;
  std::set<std::string> names;
  for (const auto& row : rows) {
    if (row.record.benchmark.empty()) continue;
    names.insert(row.record.benchmark);
    if (!row.record.run.empty()) benchmark_of_run[row.record.run] = row.record.benchmark;
  }
  for (auto& row : rows) {
    if (!row.record.benchmark.empty()) continue;
    const auto it = benchmark_of_run.find(row.record.run);
    if (it != benchmark_of_run.end()) {
      row.record.benchmark = it->second;
    } else if (names.size() == 1) {
      row.record.benchmark = *names.begin();
    }
  }
}

std::string shown(const std::string& s) { return s.empty() ? "unset" : "\"" + s + "\""; }
template <typename T>
std::string shown(const std::optional<T>& v) {
  return v ? fmt::format("{}", *v) : "unset";
}

// The settings two records of different runs show ("temperature 0.6 vs 0.1").
std::string settings_difference(const EvalRecord& a, const EvalRecord& b) {
  std::vector<std::string> differences;
  const auto compare = [&](const char* name, const auto& x, const auto& y) {
    if (x != y) differences.push_back(fmt::format("{} {} vs {}", name, shown(x), shown(y)));
  };
  compare("model", a.model, b.model);
  compare("temperature", a.temperature, b.temperature);
  compare("top_p", a.top_p, b.top_p);
  compare("max_tokens", a.max_tokens, b.max_tokens);
  compare("vector", a.vector, b.vector);
  compare("w", a.w, b.w);
  if (differences.empty()) {
    return "the same model and sampling; the prompt, system prompt, stop strings, run seed or data file differ";
  }
  return fmt::format("{}", fmt::join(differences, ", "));
}

// One label holds one run: records of different runs are refused.
void require_one_run(const std::string& label, const std::vector<ResultsRow>& rows) {
  for (const auto& row : rows) {
    if (row.record.run == rows.front().record.run) continue;
    const ResultsRow& first = rows.front();
    bad_input("label \"{}\": {} and {} come from different runs ({}); give one of them another --label, or "
              "report them apart",
              label, first.where, row.where, settings_difference(first.record, row.record));
  }
}

bool same_answer(const EvalRecord& a, const EvalRecord& b) {
  return a.response == b.response && a.reasoning == b.reasoning && a.failed() == b.failed() &&
         a.finish_reason == b.finish_reason;
}

// Numbers records without a sample index (files from other tools) by their
// order per problem, drops rows that repeat a (problem, sample) with the same
// answer (warning), and refuses repeats with another answer.
std::vector<ResultsRow> without_repeats(const std::string& label, std::vector<ResultsRow> rows,
                                        std::vector<std::string>& warnings) {
  std::map<std::string, int> unnumbered;
  std::map<std::pair<std::string, int>, size_t> first_of;
  std::vector<ResultsRow> kept;
  std::vector<std::string> repeats;
  for (auto& row : rows) {
    EvalRecord& r = row.record;
    if (!r.sample) r.sample = unnumbered[r.id]++;
    const auto [it, fresh] = first_of.try_emplace({r.id, *r.sample}, kept.size());
    if (fresh) {
      kept.push_back(std::move(row));
      continue;
    }
    const ResultsRow& first = kept[it->second];
    if (!same_answer(first.record, r)) {
      bad_input("label \"{}\": {} and {} both hold problem {} sample {} with different answers (did two runs write "
                "one file?); remove the rows of one run",
                label, first.where, row.where, r.id, *r.sample);
    }
    repeats.push_back(fmt::format("{} repeats {} (problem {}, sample {})", row.where, first.where, r.id, *r.sample));
  }
  if (!repeats.empty()) {
    const size_t named = std::min(repeats.size(), kRowsNamed);
    std::string warning = fmt::format("label \"{}\": {} row(s) repeat a (problem, sample) already read and are counted "
                                      "once: {}",
                                      label, repeats.size(), fmt::join(repeats.begin(), repeats.begin() + named, "; "));
    if (repeats.size() > named) warning += fmt::format("; and {} more", repeats.size() - named);
    warnings.push_back(std::move(warning));
  }
  return kept;
}

struct Patterns {
  std::optional<Regex> steps, style;
};

GradedSample graded_sample(EvalRecord& r, GradeMode mode, const Patterns& patterns) {
  GradedSample s;
  s.index = r.sample.value_or(0);
  const Grade grade = r.grade(mode);
  s.verdict = grade.verdict;
  s.extracted = grade.extracted;
  s.rule = grade.rule;
  s.substring_verdict = r.grade(GradeMode::kSubstring).verdict;
  s.japanese = japanese_share(r.response);
  s.tokens = r.completion_tokens;
  s.cut_off = r.cut_off();
  s.steps = patterns.steps && patterns.steps->matches_somewhere(r.response);
  if (patterns.style) {
    if (const auto m = patterns.style->find(r.response)) s.style = std::pair{m->begin, m->end};
  }
  s.response = std::move(r.response);
  s.reasoning = std::move(r.reasoning);
  return s;
}

SampleGroup sample_group(const std::string& label, std::vector<ResultsRow> rows, GradeMode mode,
                         const Patterns& patterns) {
  SampleGroup g;
  g.label = label;
  for (auto& row : rows) {
    EvalRecord& r = row.record;
    if (r.w) g.w = r.w;
    if (!r.vector.empty()) g.vector = r.vector;
    ProblemSamples& p = g.problems[r.id];
    p.gold = r.answer;
    p.kind = r.kind;
    if (p.question.empty()) p.question = r.prompt;
    p.samples.push_back(graded_sample(r, mode, patterns));
  }
  // Records land in completion order, which concurrency makes vary from run to
  // run; sample order makes maj@k's tie-break (first seen) reproducible.
  for (auto& [id, p] : g.problems) std::ranges::stable_sort(p.samples, {}, &GradedSample::index);
  return g;
}

// benchmark -> label -> the rows of that group, checked and without repeats.
using RowsByGroup = std::map<std::string, std::map<std::string, std::vector<ResultsRow>>>;

RowsByGroup rows_by_group(std::vector<ResultsRow> rows) {
  name_benchmarks(rows);
  RowsByGroup groups;
  for (auto& row : rows) groups[row.record.benchmark][row.record.label].push_back(std::move(row));
  return groups;
}

// ---- statistics ----------------------------------------------------------------------

std::string canonical_answer(const std::string& answer, TaskKind kind) {
  if (kind == TaskKind::kChoice) return answer;
  const auto v = parse_integer_answer(answer);
  return v ? std::to_string(*v) : answer;
}

using ProblemFilter = std::function<bool(const std::string&)>;

bool every_problem(const std::string&) { return true; }

// Per-problem values of `g` restricted to `keep`, in id order.
std::vector<double> per_problem(const SampleGroup& g, const ProblemFilter& keep,
                                const std::function<double(const ProblemSamples&)>& value) {
  std::vector<double> out;
  for (const auto& [id, p] : g.problems) {
    if (keep(id)) out.push_back(value(p));
  }
  return out;
}

// pass@k for every k worth reporting up to the fewest samples any problem has.
std::map<int, double> pass_at(const SampleGroup& g) {
  size_t fewest = SIZE_MAX;
  for (const auto& [id, p] : g.problems) fewest = std::min(fewest, p.samples.size());
  std::map<int, double> pass;
  if (g.problems.empty() || fewest == 0) return pass;
  for (const int k : pass_k_values(static_cast<int>(fewest))) {
    double sum = 0;
    for (const auto& [id, p] : g.problems) {
      const auto correct = static_cast<uint64_t>(std::ranges::count(p.samples, Verdict::kCorrect, &GradedSample::verdict));
      sum += pass_at_k(p.samples.size(), correct, static_cast<uint64_t>(k));
    }
    pass[k] = sum / static_cast<double>(g.problems.size());
  }
  return pass;
}

// avg@k with its interval: Wilson's with one sample per problem (avg@1 is a
// binomial proportion, and Wilson's interval stays sensible at 0/n and n/n,
// where a bootstrap collapses to a point), else a bootstrap over problems.
void accuracy_with_interval(const SampleGroup& g, const ReportOptions& o, GroupReport& r) {
  const auto accuracies = per_problem(g, every_problem, [](const ProblemSamples& p) { return p.accuracy(); });
  r.avg = mean(accuracies);
  const bool one_sample_each = std::ranges::all_of(g.problems, [](const auto& p) { return p.second.samples.size() == 1; });
  r.avg_ci_method = one_sample_each ? "wilson" : "bootstrap";
  if (one_sample_each) {
    const auto correct = static_cast<uint64_t>(std::llround(std::accumulate(accuracies.begin(), accuracies.end(), 0.0)));
    r.avg_ci = wilson(correct, accuracies.size());
  } else {
    r.avg_ci = bootstrap_mean(accuracies, o.bootstrap_seed + kAccuracyStream);
  }
}

GroupReport summarize(const SampleGroup& g, const ReportOptions& o) {
  GroupReport r;
  r.label = g.label;
  r.w = g.w;
  r.vector = g.vector;
  r.problems = g.problems.size();
  accuracy_with_interval(g, o, r);
  r.pass = pass_at(g);
  double maj = 0, no_answer = 0, japanese = 0, mostly = 0, tokens = 0, cut = 0, sub = 0, disagree = 0, steps = 0, style = 0;
  for (const auto& [id, p] : g.problems) {
    std::vector<std::optional<std::string>> answers;
    for (const auto& s : p.samples) {
      answers.push_back(s.extracted);
      no_answer += s.verdict == Verdict::kNoAnswer;
      r.errors += s.verdict == Verdict::kError;
      japanese += s.japanese;
      mostly += s.japanese >= 0.5;
      tokens += static_cast<double>(s.tokens);
      cut += s.cut_off;
      steps += s.steps;
      style += s.style.has_value();
      sub += s.substring_verdict == Verdict::kCorrect;
      disagree += (s.substring_verdict == Verdict::kCorrect) != (s.verdict == Verdict::kCorrect);
      ++r.samples;
    }
    const auto majority = majority_answer(answers);
    maj += majority && *majority == canonical_answer(p.gold, p.kind);
  }
  const double n = static_cast<double>(std::max<size_t>(r.problems, 1)), m = static_cast<double>(std::max<size_t>(r.samples, 1));
  r.maj = maj / n;
  r.no_answer = no_answer / m, r.japanese = japanese / m, r.mostly_japanese = mostly / m;
  r.mean_tokens = tokens / m, r.cut_off = cut / m;
  r.substring_avg = sub / m, r.substring_disagreement = disagree / m;
  if (!o.step_pattern.empty()) r.steps = steps / m;
  if (!o.style_pattern.empty()) r.style = style / m;
  r.japanese_ci = bootstrap_mean(per_problem(g, every_problem,
                                             [](const ProblemSamples& p) {
                                               double s = 0;
                                               for (const auto& x : p.samples) s += x.japanese;
                                               return p.samples.empty() ? 0.0 : s / static_cast<double>(p.samples.size());
                                             }),
                                 o.bootstrap_seed + kJapaneseShareStream);
  return r;
}

// Paired difference of accuracies over the problems both groups have.
BootstrapTest paired_delta(const SampleGroup& a, const SampleGroup& base, const ProblemFilter& keep, uint64_t seed,
                           double& mean_delta) {
  std::vector<double> d;
  for (const auto& [id, p] : a.problems) {
    const auto other = base.problems.find(id);
    if (other != base.problems.end() && keep(id)) d.push_back(p.accuracy() - other->second.accuracy());
  }
  mean_delta = mean(d);
  return bootstrap_mean_test(d, seed);
}

std::string default_baseline(const std::map<std::string, SampleGroup>& groups) {
  for (const auto& [label, g] : groups) {
    if (g.w && *g.w == 0.0 && g.vector.empty()) return label;
  }
  return groups.begin()->first;
}

// Every gain against the baseline is one comparison; Holm's procedure over
// their p-values says which hold at family-wise 5 %.
void flag_gains_by_holm(Report& report) {
  std::vector<double> p;
  std::vector<GroupReport*> compared;
  for (auto& g : report.groups) {
    if (!g.delta) continue;
    p.push_back(g.delta_p);
    compared.push_back(&g);
  }
  const auto reject = holm_reject(p);
  for (size_t i = 0; i < compared.size(); ++i) compared[i]->holm_significant = reject[i];
  report.comparisons = compared.size();
}

// The w chosen on dev for each vector, and its paired gain on test.
void choose_on_dev(const std::map<std::string, SampleGroup>& groups, const ReportOptions& o, Report& report) {
  const SampleGroup& base = groups.at(report.baseline);
  const auto dev = [&](const std::string& id) { return in_dev_split(id, o.dev_fraction, o.split_seed); };
  for (const auto& [id, p] : base.problems) (dev(id) ? report.dev_problems : report.test_problems)++;
  for (const auto& [vector, points] : series_by_vector(report.groups)) {
    const GroupReport* best = points.front();
    for (const auto* g : points) {
      if (g->dev_avg > best->dev_avg) best = g;  // ties: the smaller w
    }
    HeldOutChoice choice{vector, best->label, std::nullopt, {}};
    if (best->label != report.baseline) {
      double delta = 0;
      choice.test_delta_ci = paired_delta(groups.at(best->label), base, std::not_fn(dev), o.bootstrap_seed + kTestGainStream,
                                          delta)
                                 .ci;
      choice.test_delta = delta;
    }
    report.choices.push_back(std::move(choice));
  }
}

Report benchmark_report(const std::string& benchmark, std::map<std::string, SampleGroup> groups, const ReportOptions& o) {
  Report report;
  report.benchmark = benchmark;
  report.mode = grade_mode_name(o.mode);
  report.dev_fraction = o.dev_fraction;
  report.has_steps = !o.step_pattern.empty();
  report.has_style = !o.style_pattern.empty();
  report.baseline = o.baseline.empty() ? default_baseline(groups) : o.baseline;
  if (!groups.count(report.baseline)) {
    fail(ErrorKind::kUsage, "baseline \"{}\" is not a label in the results{}", report.baseline,
         benchmark.empty() ? "" : " of benchmark " + benchmark);
  }
  const SampleGroup& base = groups.at(report.baseline);
  const auto dev = [&](const std::string& id) { return in_dev_split(id, o.dev_fraction, o.split_seed); };
  for (const auto& [label, g] : groups) {
    GroupReport r = summarize(g, o);
    if (label != report.baseline) {
      double delta = 0;
      const BootstrapTest test = paired_delta(g, base, every_problem, o.bootstrap_seed + kGainStream, delta);
      r.delta = delta, r.delta_ci = test.ci, r.delta_p = test.p;
    }
    if (o.dev_fraction > 0) {
      const auto accuracy = [](const ProblemSamples& p) { return p.accuracy(); };
      r.dev_avg = mean(per_problem(g, dev, accuracy));
      const auto test_values = per_problem(g, std::not_fn(dev), accuracy);
      r.test_avg = mean(test_values);
      r.test_ci = bootstrap_mean(test_values, o.bootstrap_seed + kTestAccuracyStream);
    }
    report.groups.push_back(std::move(r));
  }
  std::sort(report.groups.begin(), report.groups.end(), [](const GroupReport& a, const GroupReport& b) {
    if (a.w.has_value() != b.w.has_value()) return a.w.has_value();
    if (a.vector != b.vector) return a.vector < b.vector;
    if (a.w && *a.w != *b.w) return *a.w < *b.w;
    return a.label < b.label;
  });
  flag_gains_by_holm(report);
  if (o.dev_fraction > 0) choose_on_dev(groups, o, report);
  for (const auto& g : report.groups) report.samples.push_back(std::move(groups.at(g.label)));
  return report;
}

}  // namespace

double ProblemSamples::accuracy() const {
  const auto correct = std::ranges::count(samples, Verdict::kCorrect, &GradedSample::verdict);
  return samples.empty() ? 0 : static_cast<double>(correct) / static_cast<double>(samples.size());
}

std::vector<Series> series_by_vector(const std::vector<GroupReport>& groups) {
  std::vector<Series> series;
  for (const auto& g : groups) {
    if (!g.w) continue;
    if (series.empty() || series.back().vector != g.vector) series.push_back({g.vector, {}});
    series.back().points.push_back(&g);
  }
  return series;
}

std::vector<Report> build_reports(const ReportOptions& o) {
  Patterns patterns;
  if (!o.step_pattern.empty()) patterns.steps.emplace(o.step_pattern, "step pattern");
  if (!o.style_pattern.empty()) patterns.style.emplace(o.style_pattern, "style pattern");
  std::vector<Report> reports;
  for (auto& [benchmark, labels] : rows_by_group(read_rows(o.inputs))) {
    std::vector<std::string> warnings;
    std::map<std::string, SampleGroup> groups;
    for (auto& [label, rows] : labels) {
      require_one_run(label, rows);
      groups.emplace(label, sample_group(label, without_repeats(label, std::move(rows), warnings), o.mode, patterns));
    }
    reports.push_back(benchmark_report(benchmark, std::move(groups), o));
    reports.back().warnings = std::move(warnings);
  }
  return reports;
}

Report build_report(const ReportOptions& o) {
  auto reports = build_reports(o);
  if (reports.size() != 1) {
    bad_input("{} hold {} benchmarks; report them with rvec report, which gives each its own table",
              fmt::join(o.inputs, ", "), reports.size());
  }
  return std::move(reports.front());
}

}  // namespace rvec
