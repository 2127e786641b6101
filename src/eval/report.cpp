#include "eval/report.hpp"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <numeric>

#include "base/error.hpp"
#include "base/regular_file.hpp"
#include "base/text.hpp"
#include "eval/dataset.hpp"
#include "base/regex.hpp"
#include "text/unicode.hpp"

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


using nlohmann::json;

struct Sample {
  int index = 0;
  std::string verdict, substring_verdict;
  std::optional<std::string> extracted;
  double japanese = 0;
  int64_t tokens = 0;
  bool cut_off = false;
  bool steps = false;
};

struct ProblemSamples {
  std::string gold;
  TaskKind kind = TaskKind::kInteger;
  std::vector<Sample> samples;
  double accuracy() const {
    double c = 0;
    for (const auto& s : samples) c += s.verdict == "correct";
    return samples.empty() ? 0 : c / static_cast<double>(samples.size());
  }
};

struct Group {
  std::string label;
  std::optional<double> w;
  std::string vector;
  std::map<std::string, ProblemSamples> problems;
};

std::string canonical_answer(const std::string& answer, TaskKind kind) {
  if (kind == TaskKind::kChoice) return answer;
  const auto v = parse_integer_answer(answer);
  return v ? std::to_string(*v) : answer;
}

std::map<std::string, Group> read_groups(const ReportOptions& o) {
  std::map<std::string, Group> groups;
  std::optional<Regex> step_regex;
  if (!o.step_pattern.empty()) step_regex.emplace(o.step_pattern, "step pattern");
  for (const auto& path : o.inputs) {
    LineReader in(path);
    size_t line_no = 0;
    for (std::string line; in.next(line);) {
      ++line_no;
      if (line.empty()) continue;
      const auto r = json::parse(line, nullptr, false);
      if (!r.is_object() || !r.contains("id") || !r.contains("response") || !r.contains("answer")) {
        bad_input("{}:{}: not an eval record (needs id, response and answer)", path, line_no);
      }
      const std::string label = r.value("label", path);
      Group& g = groups[label];
      g.label = label;
      if (r.contains("w") && r["w"].is_number()) g.w = r["w"].get<double>();
      if (r.contains("vector") && r["vector"].is_string()) g.vector = r["vector"].get<std::string>();
      const auto id = r["id"].is_string() ? r["id"].get<std::string>() : r["id"].dump();
      ProblemSamples& p = g.problems[id];
      p.gold = r["answer"].is_string() ? r["answer"].get<std::string>() : r["answer"].dump();
      p.kind = r.value("kind", "integer") == "choice" ? TaskKind::kChoice : TaskKind::kInteger;
      Sample s;
      s.index = r.value("sample", static_cast<int>(p.samples.size()));
      const std::string response = r["response"].is_string() ? r["response"].get<std::string>() : "";
      const std::string reasoning = r.value("reasoning", "");
      const std::string graded = response.empty() && !reasoning.empty() ? reasoning : response;
      if (r.value("verdict", "") == "error") {
        s.verdict = s.substring_verdict = "error";
      } else {
        const auto grade = grade_response(graded, p.gold, o.mode, p.kind);
        s.verdict = grade.verdict;
        s.extracted = grade.extracted;
        s.substring_verdict = grade_response(graded, p.gold, GradeMode::kSubstring, p.kind).verdict;
      }
      s.japanese = japanese_share(response);
      s.tokens = r.value("completion_tokens", int64_t{0});
      s.cut_off = r.value("finish_reason", "") == "length";
      s.steps = step_regex && step_regex->matches_somewhere(replace_invalid_utf8(response));
      p.samples.push_back(std::move(s));
    }
  }
  if (groups.empty()) bad_input("no records in {}", fmt::join(o.inputs, ", "));
  // Records land in completion order, which concurrency makes vary from run to
  // run; sample order makes maj@k's tie-break (first seen) reproducible.
  for (auto& [label, g] : groups) {
    for (auto& [id, p] : g.problems) {
      std::ranges::stable_sort(p.samples, {}, &Sample::index);
    }
  }
  return groups;
}

// Per-problem values of `g` restricted to `keep`, in id order.
std::vector<double> per_problem(const Group& g, const std::function<bool(const std::string&)>& keep,
                                const std::function<double(const ProblemSamples&)>& value) {
  std::vector<double> out;
  for (const auto& [id, p] : g.problems) {
    if (keep(id)) out.push_back(value(p));
  }
  return out;
}

GroupReport summarize(const Group& g, const ReportOptions& o) {
  GroupReport r;
  r.label = g.label;
  r.w = g.w;
  r.vector = g.vector;
  r.problems = g.problems.size();
  const auto all = [](const std::string&) { return true; };
  const auto accuracies = per_problem(g, all, [](const ProblemSamples& p) { return p.accuracy(); });
  r.avg = mean(accuracies);
  // One sample per problem: avg@1 is a binomial proportion, and Wilson's
  // interval is the standard one (it stays sensible at 0/n and n/n, where a
  // bootstrap collapses to a point). More samples: bootstrap over problems.
  const bool one_sample_each = std::ranges::all_of(g.problems, [](const auto& p) { return p.second.samples.size() == 1; });
  r.avg_ci_method = one_sample_each ? "wilson" : "bootstrap";
  if (one_sample_each) {
    const auto correct = static_cast<uint64_t>(std::llround(std::accumulate(accuracies.begin(), accuracies.end(), 0.0)));
    r.avg_ci = wilson(correct, accuracies.size());
  } else {
    r.avg_ci = bootstrap_mean(accuracies, o.bootstrap_seed + kAccuracyStream);
  }
  double maj = 0, pass = 0, no_answer = 0, japanese = 0, mostly = 0, tokens = 0, cut = 0, sub = 0, disagree = 0, steps = 0;
  for (const auto& [id, p] : g.problems) {
    std::vector<std::optional<std::string>> answers;
    uint64_t correct = 0;
    for (const auto& s : p.samples) {
      answers.push_back(s.extracted);
      correct += s.verdict == "correct";
      no_answer += s.verdict == "no_answer";
      r.errors += s.verdict == "error";
      japanese += s.japanese;
      mostly += s.japanese >= 0.5;
      tokens += static_cast<double>(s.tokens);
      cut += s.cut_off;
      steps += s.steps;
      sub += s.substring_verdict == "correct";
      disagree += (s.substring_verdict == "correct") != (s.verdict == "correct");
      ++r.samples;
    }
    const auto majority = majority_answer(answers);
    maj += majority && *majority == canonical_answer(p.gold, p.kind);
    pass += pass_at_k(p.samples.size(), correct, p.samples.size());
  }
  const double n = static_cast<double>(std::max<size_t>(r.problems, 1)), m = static_cast<double>(std::max<size_t>(r.samples, 1));
  r.maj = maj / n, r.pass = pass / n;
  r.no_answer = no_answer / m, r.japanese = japanese / m, r.mostly_japanese = mostly / m;
  r.mean_tokens = tokens / m, r.cut_off = cut / m;
  r.substring_avg = sub / m, r.substring_disagreement = disagree / m;
  if (!o.step_pattern.empty()) r.steps = steps / m;
  r.japanese_ci = bootstrap_mean(per_problem(g, all, [](const ProblemSamples& p) {
                                   double s = 0;
                                   for (const auto& x : p.samples) s += x.japanese;
                                   return p.samples.empty() ? 0.0 : s / static_cast<double>(p.samples.size());
                                 }),
                                 o.bootstrap_seed + kJapaneseShareStream);
  return r;
}

// Paired difference of accuracies over the problems both groups have.
std::pair<double, Interval> paired_delta(const Group& a, const Group& base, const std::function<bool(const std::string&)>& keep,
                                         uint64_t seed) {
  std::vector<double> d;
  for (const auto& [id, p] : a.problems) {
    const auto other = base.problems.find(id);
    if (other != base.problems.end() && keep(id)) d.push_back(p.accuracy() - other->second.accuracy());
  }
  return {mean(d), bootstrap_mean(d, seed)};
}

// The groups with a w, one series per vector in the groups' order (the
// reasoning vector first); `groups` is sorted by vector, then w.
struct Series {
  std::string vector;
  std::vector<const GroupReport*> points;
};

std::vector<Series> series_by_vector(const std::vector<GroupReport>& groups) {
  std::vector<Series> series;
  for (const auto& g : groups) {
    if (!g.w) continue;
    if (series.empty() || series.back().vector != g.vector) series.push_back({g.vector, {}});
    series.back().points.push_back(&g);
  }
  return series;
}

}  // namespace

Report build_report(const ReportOptions& o) {
  const auto groups = read_groups(o);
  Report report;
  report.mode = grade_mode_name(o.mode);
  report.dev_fraction = o.dev_fraction;
  std::string baseline = o.baseline;
  if (baseline.empty()) {
    for (const auto& [label, g] : groups) {
      if (g.w && *g.w == 0.0 && g.vector.empty()) baseline = label;
    }
  }
  if (baseline.empty()) baseline = groups.begin()->first;
  if (!groups.count(baseline)) fail(ErrorKind::kUsage, "baseline \"{}\" is not a label in the results", baseline);
  report.baseline = baseline;
  const Group& base = groups.at(baseline);
  const auto all = [](const std::string&) { return true; };
  const auto dev = [&](const std::string& id) { return in_dev_split(id, o.dev_fraction, o.split_seed); };
  const auto test = [&](const std::string& id) { return !dev(id); };
  for (const auto& [label, g] : groups) {
    GroupReport r = summarize(g, o);
    if (label != baseline) std::tie(r.delta, r.delta_ci) = paired_delta(g, base, all, o.bootstrap_seed + kGainStream);
    if (o.dev_fraction > 0) {
      const auto accuracy = [](const ProblemSamples& p) { return p.accuracy(); };
      r.dev_avg = mean(per_problem(g, dev, accuracy));
      const auto test_values = per_problem(g, test, accuracy);
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
  if (o.dev_fraction > 0) {
    for (const auto& [id, p] : base.problems) (dev(id) ? report.dev_problems : report.test_problems)++;
    for (const auto& [vector, points] : series_by_vector(report.groups)) {
      const GroupReport* best = points.front();
      for (const auto* g : points) {
        if (g->dev_avg > best->dev_avg) best = g;  // ties: the smaller w
      }
      HeldOutChoice choice{vector, best->label, std::nullopt, {}};
      if (best->label != baseline) {
        std::tie(choice.test_delta, choice.test_delta_ci) = paired_delta(groups.at(best->label), base, test, o.bootstrap_seed + kTestGainStream);
      }
      report.choices.push_back(std::move(choice));
    }
  }
  return report;
}

std::string format_report(const Report& r) {
  const bool any_wilson = std::ranges::any_of(r.groups, [](const GroupReport& g) { return g.avg_ci_method == "wilson"; });
  std::string out = fmt::format("grading: {}   baseline: {}   95% CIs: {}\n\n", r.mode, r.baseline,
                                any_wilson ? "Wilson for avg@1 (one sample per problem), otherwise bootstrap over problems"
                                           : "bootstrap over problems");
  const bool steps = !r.groups.empty() && r.groups.front().steps.has_value();
  out += fmt::format("{:<14} {:>6} {:>8}  {:<22} {:<24} {:>6} {:>6} {:>7} {:>6} {:>8} {:>6}{}\n", "label", "w",
                     "n x k", "avg@k [95% CI]", "vs baseline [95% CI]", "maj@k", "pass@k", "no-ans", "ja", "tokens",
                     "cut", steps ? "  steps" : "");
  for (const auto& g : r.groups) {
    const auto k = g.problems ? g.samples / g.problems : 0;
    const std::string delta = g.delta ? fmt::format("{:+.3f} [{:+.3f}, {:+.3f}]", *g.delta, g.delta_ci.low, g.delta_ci.high)
                                      : "—";
    out += fmt::format("{:<14} {:>6} {:>8}  {:<22} {:<24} {:>6.3f} {:>6.3f} {:>7.3f} {:>6.3f} {:>8.0f} {:>6.3f}{}\n",
                       g.label, g.w ? fmt::format("{:g}", *g.w) : "-", fmt::format("{}x{}", g.problems, k),
                       fmt::format("{:.3f} [{:.3f}, {:.3f}]", g.avg, g.avg_ci.low, g.avg_ci.high), delta, g.maj,
                       g.pass, g.no_answer, g.japanese, g.mean_tokens, g.cut_off,
                       g.steps ? fmt::format("  {:.3f}", *g.steps) : "");
  }
  if (!r.choices.empty()) {
    out += fmt::format("\nheld-out choice: dev = {} problems, test = {} problems (dev fraction {:g})\n", r.dev_problems,
                       r.test_problems, r.dev_fraction);
  }
  for (const auto& c : r.choices) {
    const auto it = std::ranges::find(r.groups, c.label, &GroupReport::label);
    out += fmt::format("{}chosen on dev: {} (dev avg {:.3f}); test avg {:.3f} [{:.3f}, {:.3f}]",
                       c.vector.empty() ? "" : c.vector + " ", c.label, it->dev_avg, it->test_avg, it->test_ci.low,
                       it->test_ci.high);
    if (c.test_delta) {
      out += fmt::format("; vs baseline on test {:+.3f} [{:+.3f}, {:+.3f}]", *c.test_delta, c.test_delta_ci.low,
                         c.test_delta_ci.high);
    }
    out += "\n";
  }
  double disagreement = 0;
  for (const auto& g : r.groups) disagreement = std::max(disagreement, g.substring_disagreement);
  out += fmt::format("\nsubstring grading (the paper's) disagrees with {} on up to {:.1f}% of samples\n", r.mode,
                     100 * disagreement);
  return out;
}

json report_json(const Report& r) {
  json groups = json::array();
  for (const auto& g : r.groups) {
    json j = {{"label", g.label}, {"w", g.w ? json(*g.w) : json()},
              {"vector", g.vector.empty() ? json() : json(g.vector)}, {"problems", g.problems}, {"samples", g.samples},
              {"errors", g.errors}, {"avg_at_k", g.avg}, {"avg_ci95", {g.avg_ci.low, g.avg_ci.high}}, {"avg_ci_method", g.avg_ci_method},
              {"maj_at_k", g.maj}, {"pass_at_k", g.pass}, {"no_answer_rate", g.no_answer},
              {"japanese_share", g.japanese}, {"japanese_share_ci95", {g.japanese_ci.low, g.japanese_ci.high}},
              {"mostly_japanese_rate", g.mostly_japanese}, {"mean_completion_tokens", g.mean_tokens},
              {"cut_off_rate", g.cut_off}, {"substring_accuracy", g.substring_avg},
              {"substring_disagreement", g.substring_disagreement}};
    if (g.steps) j["step_rate"] = *g.steps;
    if (g.delta) j["delta_vs_baseline"] = {{"mean", *g.delta}, {"ci95", {g.delta_ci.low, g.delta_ci.high}}};
    if (r.dev_fraction > 0) j["split"] = {{"dev_avg", g.dev_avg}, {"test_avg", g.test_avg}, {"test_ci95", {g.test_ci.low, g.test_ci.high}}};
    groups.push_back(j);
  }
  json out = {{"grading", r.mode}, {"baseline", r.baseline}, {"groups", groups}};
  if (!r.choices.empty()) {
    const auto choice_json = [](const HeldOutChoice& c) {
      json j = {{"chosen", c.label}};
      if (c.test_delta) {
        j["test_delta_vs_baseline"] = {{"mean", *c.test_delta}, {"ci95", {c.test_delta_ci.low, c.test_delta_ci.high}}};
      }
      return j;
    };
    json held_out = {{"dev_fraction", r.dev_fraction}, {"dev_problems", r.dev_problems}, {"test_problems", r.test_problems}};
    json controls = json::array();
    for (const auto& c : r.choices) {
      if (c.vector.empty()) {
        held_out.update(choice_json(c));
      } else {
        controls.push_back(choice_json(c));
        controls.back()["vector"] = c.vector;
      }
    }
    if (!controls.empty()) held_out["controls"] = controls;
    out["held_out"] = held_out;
  }
  return out;
}

// Each vector is one curve against w: the reasoning vector's accuracy and
// Japanese share, and each control's accuracy (dashed), which starts at the
// baseline (w = 0 is the target for every vector).
std::string report_svg(const Report& r) {
  // The legend is a row of entries between the title and the plot, four to a row.
  constexpr double W = 720, H = 440, left = 70, right = 30, top = 78, bottom = 60, legend_width = 160;
  using Points = std::vector<const GroupReport*>;
  Points main_points;
  std::vector<Series> controls;
  std::vector<double> ticks;
  const auto baseline = std::ranges::find(r.groups, r.baseline, &GroupReport::label);
  for (auto& curve : series_by_vector(r.groups)) {
    for (const auto* g : curve.points) {
      if (std::ranges::find(ticks, *g->w) == ticks.end()) ticks.push_back(*g->w);
    }
    if (curve.vector.empty()) {
      main_points = std::move(curve.points);
      continue;
    }
    if (baseline != r.groups.end() && baseline->w) curve.points.insert(curve.points.begin(), &*baseline);
    controls.push_back(std::move(curve));
  }
  std::ranges::sort(ticks);
  double wmin = 0, wmax = 1;
  if (!ticks.empty()) {
    wmin = std::min(0.0, ticks.front());
    wmax = std::max(wmin + 1e-9, ticks.back());
  }
  const auto x = [&](double w) { return left + (w - wmin) / (wmax - wmin) * (W - left - right); };
  const auto y = [&](double v) { return top + (1 - v) * (H - top - bottom); };
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"24\" font-size=\"15\">Accuracy ({} grading, avg@k) and Japanese share against w, 95% CIs</text>\n",
      W, H, left, r.mode);
  for (int t = 0; t <= 5; ++t) {
    const double v = t / 5.0;
    svg += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>"
                       "<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{:.1f}</text>\n",
                       left, W - right, y(v), y(v), left - 8, y(v) + 4, v);
  }
  for (const double w : ticks) {
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{:g}</text>\n", x(w), H - bottom + 18, w);
  }
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">w (target + w·v)</text>\n", (W + left - right) / 2, H - 15);
  int legend_entry = 0;
  const auto series = [&](const Points& points, const char* color, const std::string& name, double offset, auto value,
                          auto ci, const char* dash) {
    std::string path;
    for (const auto* g : points) {
      const double px = x(*g->w) + offset;
      const Interval c = ci(*g);
      svg += fmt::format("<line x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1:.1f}\" y2=\"{2:.1f}\" stroke=\"{3}\" stroke-width=\"1.5\"/>"
                         "<line x1=\"{4:.1f}\" x2=\"{5:.1f}\" y1=\"{1:.1f}\" y2=\"{1:.1f}\" stroke=\"{3}\"/>"
                         "<line x1=\"{4:.1f}\" x2=\"{5:.1f}\" y1=\"{2:.1f}\" y2=\"{2:.1f}\" stroke=\"{3}\"/>"
                         "<circle cx=\"{0:.1f}\" cy=\"{6:.1f}\" r=\"4\" fill=\"{3}\"/>\n",
                         px, y(c.low), y(c.high), color, px - 4, px + 4, y(value(*g)));
      path += fmt::format("{}{:.1f},{:.1f}", path.empty() ? "M" : " L", px, y(value(*g)));
    }
    if (!path.empty()) {
      svg += fmt::format("<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\" stroke-dasharray=\"{}\"/>\n", path,
                         color, dash);
    }
    const double lx = left + legend_width * (legend_entry % 4), ly = 38 + 18 * (legend_entry / 4);
    svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>\n",
                       lx, ly, color, lx + 18, ly + 10, name);
    ++legend_entry;
  };
  const auto accuracy = [](const GroupReport& g) { return g.avg; };
  const auto accuracy_ci = [](const GroupReport& g) { return g.avg_ci; };
  series(main_points, "#1f77b4", "accuracy (avg@k)", -3, accuracy, accuracy_ci, "none");
  series(main_points, "#ff7f0e", "Japanese share", 3, [](const GroupReport& g) { return g.japanese; },
         [](const GroupReport& g) { return g.japanese_ci; }, "none");
  constexpr std::array<const char*, 4> kControlColors = {"#7f7f7f", "#2ca02c", "#9467bd", "#8c564b"};
  for (size_t i = 0; i < controls.size(); ++i) {
    series(controls[i].points, kControlColors[i % kControlColors.size()], controls[i].vector + " accuracy", 0, accuracy,
           accuracy_ci, "6 4");
  }
  svg += "</svg>\n";
  return svg;
}

void write_file_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".rvec-tmp";
  write_regular_file(tmp, text);
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) io_error("{}: cannot rename into place: {}", path, ec.message());
}

void write_report_plot(const Report& report, const std::string& svg_path) {
  write_file_atomically(svg_path, report_svg(report));
  if (!svg_path.ends_with(".svg") || std::system("command -v rsvg-convert >/dev/null 2>&1") != 0) return;
  const std::string png = svg_path.substr(0, svg_path.size() - 4) + ".png";
  const std::string cmd = fmt::format("rsvg-convert -o {} {}", shell_quote(png), shell_quote(svg_path));
  if (std::system(cmd.c_str()) != 0) fmt::print(stderr, "rvec: warning: rsvg-convert could not write {}\n", png);
}

}  // namespace rvec
