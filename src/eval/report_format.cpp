// The report as text, JSON and an SVG plot.
#include "eval/report.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "base/error.hpp"
#include "base/regular_file.hpp"
#include "base/text.hpp"

namespace rvec {
namespace {

using nlohmann::json;

// The pass@k columns of the table: every k reported except 1 (pass@1 is
// avg@k), the largest three; pass@1 alone when one sample is all there is.
std::vector<int> table_pass_ks(const Report& r) {
  std::set<int> all;
  for (const auto& g : r.groups) {
    for (const auto& [k, value] : g.pass) all.insert(k);
  }
  std::vector<int> ks(all.begin(), all.end());
  if (ks.size() > 1) ks.erase(ks.begin());
  if (ks.size() > 3) ks.erase(ks.begin(), ks.end() - 3);
  return ks;
}

std::string interval_text(double value, const Interval& ci, bool sign) {
  return sign ? fmt::format("{:+.3f} [{:+.3f}, {:+.3f}]", value, ci.low, ci.high)
              : fmt::format("{:.3f} [{:.3f}, {:.3f}]", value, ci.low, ci.high);
}

std::string cell(double value) { return fmt::format("{:.3f}", value); }

// Labels in the order the reports first show them.
std::vector<std::string> labels_in_order(std::span<const Report> reports) {
  std::vector<std::string> labels;
  for (const auto& r : reports) {
    for (const auto& g : r.groups) {
      if (std::ranges::find(labels, g.label) == labels.end()) labels.push_back(g.label);
    }
  }
  return labels;
}

// {"1": 0.25, "2": 0.43, "4": 0.68}
json pass_json(const GroupReport& g) {
  json out = json::object();
  for (const auto& [k, value] : g.pass) out[std::to_string(k)] = value;
  return out;
}

const GroupReport* find_group(const Report& r, const std::string& label) {
  const auto it = std::ranges::find(r.groups, label, &GroupReport::label);
  return it == r.groups.end() ? nullptr : &*it;
}

std::string format_table(const TextTable& table) {
  const auto line = [&](const auto& text_of) {
    std::string out;
    for (size_t i = 0; i < table.columns.size(); ++i) {
      const TextTable::Column& c = table.columns[i];
      out += std::string(i ? c.gap : 0, ' ');
      out += c.left ? fmt::format("{:<{}}", text_of(i), c.width) : fmt::format("{:>{}}", text_of(i), c.width);
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out + "\n";
  };
  std::string out = line([&](size_t i) { return table.columns[i].header; });
  for (const auto& row : table.rows) out += line([&](size_t i) { return row[i]; });
  return out;
}

}  // namespace

TextTable report_table(const Report& r) {
  const auto ks = table_pass_ks(r);
  TextTable t;
  t.columns = {{"label", 14, 1, true}, {"w", 6}, {"n x k", 8}, {"avg@k [95% CI]", 22, 2, true},
               {"vs baseline [95% CI]", 24, 1, true}, {"holm", 4, 1, true}, {"maj@k", 6}};
  for (const int k : ks) t.columns.push_back({fmt::format("pass@{}", k), 6});
  t.columns.push_back({"no-ans", 7});
  t.columns.push_back({"ja", 6});
  if (r.has_style) t.columns.push_back({"style", 6});
  t.columns.push_back({"tokens", 8});
  t.columns.push_back({"cut", 6});
  if (r.has_steps) t.columns.push_back({"steps", 5, 2, true});
  for (const auto& g : r.groups) {
    std::vector<std::string> row = {g.label, g.w ? fmt::format("{:g}", *g.w) : "-",
                                    fmt::format("{}x{}", g.problems, g.problems ? g.samples / g.problems : 0),
                                    interval_text(g.avg, g.avg_ci, false),
                                    g.delta ? interval_text(*g.delta, g.delta_ci, true) : "—",
                                    g.delta ? (g.holm_significant ? "yes" : "no") : "", cell(g.maj)};
    for (const int k : ks) row.push_back(g.pass.count(k) ? cell(g.pass.at(k)) : "-");
    row.push_back(cell(g.no_answer));
    row.push_back(cell(g.japanese));
    if (r.has_style) row.push_back(cell(g.style.value_or(0)));
    row.push_back(fmt::format("{:.0f}", g.mean_tokens));
    row.push_back(cell(g.cut_off));
    if (r.has_steps) row.push_back(cell(g.steps.value_or(0)));
    t.rows.push_back(std::move(row));
  }
  return t;
}

TextTable summary_table(std::span<const Report> reports) {
  TextTable t;
  t.columns = {{"label", 14, 1, true}};
  for (const auto& r : reports) t.columns.push_back({r.benchmark, 22, 2, true});
  for (const auto& label : labels_in_order(reports)) {
    std::vector<std::string> row = {label};
    for (const auto& r : reports) {
      const GroupReport* g = find_group(r, label);
      row.push_back(g ? interval_text(g->avg, g->avg_ci, false) : "—");
    }
    t.rows.push_back(std::move(row));
  }
  return t;
}

std::string held_out_text(const Report& r) {
  std::string out;
  if (!r.choices.empty()) {
    out += fmt::format("held-out choice: dev = {} problems, test = {} problems (dev fraction {:g})\n", r.dev_problems,
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
  return out;
}

std::string comparisons_note(const Report& r) {
  return fmt::format("{} gain(s) compared with {}; holm: yes = the gain holds at a family-wise 5% level (Holm's "
                     "procedure over the bootstrap p-values)",
                     r.comparisons, r.baseline);
}

std::string format_report(const Report& r) {
  const bool any_wilson = std::ranges::any_of(r.groups, [](const GroupReport& g) { return g.avg_ci_method == "wilson"; });
  std::string out;
  for (const auto& warning : r.warnings) out += fmt::format("warning: {}\n", warning);
  if (!r.warnings.empty()) out += "\n";
  out += fmt::format("grading: {}   baseline: {}   95% CIs: {}\n\n", r.mode, r.baseline,
                     any_wilson ? "Wilson for avg@1 (one sample per problem), otherwise bootstrap over problems"
                                : "bootstrap over problems");
  out += format_table(report_table(r));
  if (r.comparisons > 0) out += "\n" + comparisons_note(r) + "\n";
  if (!r.choices.empty()) out += "\n" + held_out_text(r);
  double disagreement = 0;
  for (const auto& g : r.groups) disagreement = std::max(disagreement, g.substring_disagreement);
  out += fmt::format("\nsubstring grading (the paper's) disagrees with {} on up to {:.1f}% of samples\n", r.mode,
                     100 * disagreement);
  return out;
}

std::string format_summary(std::span<const Report> reports) {
  return fmt::format("summary: avg@k [95% CI] per benchmark ({} grading)\n", reports.front().mode) +
         format_table(summary_table(reports));
}

std::string format_reports(std::span<const Report> reports) {
  if (reports.size() == 1) return format_report(reports.front());
  std::string out;
  for (const auto& r : reports) out += fmt::format("== {} ==\n{}\n", r.benchmark, format_report(r));
  return out + format_summary(reports);
}

json report_json(const Report& r) {
  json groups = json::array();
  for (const auto& g : r.groups) {
    json j = {{"label", g.label}, {"w", g.w ? json(*g.w) : json()},
              {"vector", g.vector.empty() ? json() : json(g.vector)}, {"problems", g.problems}, {"samples", g.samples},
              {"errors", g.errors}, {"avg_at_k", g.avg}, {"avg_ci95", {g.avg_ci.low, g.avg_ci.high}}, {"avg_ci_method", g.avg_ci_method},
              {"maj_at_k", g.maj}, {"pass_at_k", g.pass.empty() ? 0.0 : g.pass.rbegin()->second},
              {"pass_at", pass_json(g)}, {"no_answer_rate", g.no_answer},
              {"japanese_share", g.japanese}, {"japanese_share_ci95", {g.japanese_ci.low, g.japanese_ci.high}},
              {"mostly_japanese_rate", g.mostly_japanese}, {"mean_completion_tokens", g.mean_tokens},
              {"cut_off_rate", g.cut_off}, {"substring_accuracy", g.substring_avg},
              {"substring_disagreement", g.substring_disagreement}};
    if (g.steps) j["step_rate"] = *g.steps;
    if (g.style) j["style_rate"] = *g.style;
    if (g.delta) {
      j["delta_vs_baseline"] = {{"mean", *g.delta}, {"ci95", {g.delta_ci.low, g.delta_ci.high}}, {"p", g.delta_p},
                                {"holm_significant", g.holm_significant}};
    }
    if (r.dev_fraction > 0) j["split"] = {{"dev_avg", g.dev_avg}, {"test_avg", g.test_avg}, {"test_ci95", {g.test_ci.low, g.test_ci.high}}};
    groups.push_back(j);
  }
  json out = {{"grading", r.mode}, {"baseline", r.baseline}, {"comparisons", r.comparisons}, {"groups", groups},
              {"warnings", r.warnings}};
  if (!r.benchmark.empty()) out["benchmark"] = r.benchmark;
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

json reports_json(std::span<const Report> reports) {
  if (reports.size() == 1) return report_json(reports.front());
  json benchmarks = json::array(), summary = json::array();
  for (const auto& r : reports) benchmarks.push_back(report_json(r));
  for (const auto& label : labels_in_order(reports)) {
    json avg = json::object();
    for (const auto& r : reports) {
      if (const GroupReport* g = find_group(r, label)) avg[r.benchmark] = g->avg;
    }
    summary.push_back({{"label", label}, {"avg_at_k", avg}});
  }
  return {{"benchmarks", benchmarks}, {"summary", summary}};
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
    series(controls[i].points, kControlColors[i % kControlColors.size()], xml_escape(controls[i].vector) + " accuracy", 0, accuracy,
           accuracy_ci, "6 4");
  }
  svg += "</svg>\n";
  return svg;
}

std::string path_for_benchmark(const std::string& path, const std::string& benchmark) {
  std::string name = benchmark;
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') c = '_';
  }
  const std::filesystem::path p(path);
  return (p.parent_path() / (p.stem().string() + "-" + name + p.extension().string())).string();
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
