// rvec report on results files with known outcomes: intervals, paired gains,
// and the held-out choice of w.
#include "eval/report.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

using nlohmann::json;

// Writes `problems` records per sample index for one model: problem i is
// answered correctly in sample s when correct(i, s).
// `vector` names a control vector ("" for the reasoning vector).
template <typename Correct>
std::string write_results(const test::TempDir& dir, const std::string& label, double w, int problems, int samples,
                          Correct correct, const std::string& vector = "") {
  const auto path = (dir / (label + ".jsonl")).string();
  std::ofstream out(path);
  for (int i = 0; i < problems; ++i) {
    for (int s = 0; s < samples; ++s) {
      json record = {{"id", fmt::format("p{:02}", i)}, {"sample", s}, {"label", label}, {"w", w}, {"answer", "7"},
                     {"response", correct(i, s) ? "答えは \\boxed{7}" : "答えは \\boxed{3}"}};
      if (!vector.empty()) record["vector"] = vector;
      out << record.dump() << "\n";
    }
  }
  return path;
}

const GroupReport& group(const Report& r, const std::string& label) {
  for (const auto& g : r.groups) {
    if (g.label == label) return g;
  }
  throw std::runtime_error("no group " + label);
}

TEST(Report, OneSamplePerProblemUsesWilsonAndPairsTheGain) {
  test::TempDir dir;
  ReportOptions o;
  o.inputs = {write_results(dir, "w=0", 0, 30, 1, [](int i, int) { return i < 4; }),
              write_results(dir, "w=1", 1, 30, 1, [](int i, int) { return i < 10; })};
  const Report r = build_report(o);
  const auto& base = group(r, "w=0");
  const auto& merged = group(r, "w=1");
  EXPECT_EQ(base.avg_ci_method, "wilson");
  EXPECT_NEAR(base.avg, 4.0 / 30, 1e-12);
  EXPECT_NEAR(base.avg_ci.low, 0.0531, 5e-4);  // the paper's 4/30 and 10/30, by hand
  EXPECT_NEAR(base.avg_ci.high, 0.2968, 5e-4);
  EXPECT_NEAR(merged.avg_ci.low, 0.1923, 5e-4);
  EXPECT_NEAR(merged.avg_ci.high, 0.5122, 5e-4);
  ASSERT_TRUE(merged.delta.has_value());
  EXPECT_NEAR(*merged.delta, 0.2, 1e-12);
  // Six problems gained, none lost: the paired interval excludes zero even
  // though the two unpaired intervals overlap.
  EXPECT_GT(merged.delta_ci.low, 0.0);
  EXPECT_LT(merged.avg_ci.low, base.avg_ci.high);
  EXPECT_NE(format_report(r).find("Wilson for avg@1"), std::string::npos);
}

TEST(Report, SeveralSamplesUseTheBootstrapAndTheHeldOutChoiceIsReportedOnTest) {
  test::TempDir dir;
  ReportOptions o;
  o.dev_fraction = 0.5;
  o.inputs = {write_results(dir, "w=0", 0, 40, 4, [](int i, int s) { return (i + s) % 4 == 0; }),
              write_results(dir, "w=0.5", 0.5, 40, 4, [](int i, int s) { return (i + s) % 2 == 0; }),
              write_results(dir, "w=1", 1, 40, 4, [](int i, int s) { return (i + s) % 4 != 3; })};
  const Report r = build_report(o);
  EXPECT_EQ(group(r, "w=0").avg_ci_method, "bootstrap");
  EXPECT_NEAR(group(r, "w=0").avg, 0.25, 1e-12);
  EXPECT_NEAR(group(r, "w=1").avg, 0.75, 1e-12);
  ASSERT_EQ(r.choices.size(), 1u);
  EXPECT_EQ(r.choices[0].label, "w=1");
  EXPECT_EQ(r.dev_problems + r.test_problems, 40u);
  ASSERT_TRUE(r.choices[0].test_delta.has_value());
  EXPECT_NEAR(*r.choices[0].test_delta, 0.5, 1e-12);
  EXPECT_EQ(report_json(r)["groups"][0]["avg_ci_method"], "bootstrap");
}

TEST(Report, AControlVectorIsItsOwnSeriesWithItsOwnHeldOutChoice) {
  test::TempDir dir;
  ReportOptions o;
  o.dev_fraction = 0.5;
  // The reasoning vector helps at w = 1; the control moves nothing at w = 0.5
  // and loses every problem at w = 1.
  const auto baseline = [](int i, int s) { return (i + s) % 4 == 0; };
  o.inputs = {write_results(dir, "w=0", 0, 40, 4, baseline),
              write_results(dir, "w=1", 1, 40, 4, [](int i, int s) { return (i + s) % 4 != 3; }),
              write_results(dir, "control w=0.5", 0.5, 40, 4, baseline, "control"),
              write_results(dir, "control w=1", 1, 40, 4, [](int, int) { return false; }, "control")};
  const Report r = build_report(o);
  EXPECT_EQ(r.baseline, "w=0");  // a control's rows are never the baseline
  ASSERT_EQ(r.groups.size(), 4u);
  EXPECT_EQ(r.groups[1].label, "w=1");
  EXPECT_EQ(r.groups[2].label, "control w=0.5");
  EXPECT_EQ(r.groups[2].vector, "control");
  ASSERT_EQ(r.choices.size(), 2u);
  EXPECT_EQ(r.choices[0].vector, "");
  EXPECT_EQ(r.choices[0].label, "w=1");  // not "control w=1", though its w is the same
  EXPECT_EQ(r.choices[1].vector, "control");
  EXPECT_EQ(r.choices[1].label, "control w=0.5");
  ASSERT_TRUE(r.choices[1].test_delta.has_value());
  EXPECT_NEAR(*r.choices[1].test_delta, 0.0, 1e-12);
  EXPECT_NE(format_report(r).find("control chosen on dev: control w=0.5"), std::string::npos);
  const json j = report_json(r);
  EXPECT_EQ(j["held_out"]["chosen"], "w=1");
  EXPECT_EQ(j["held_out"]["controls"][0]["vector"], "control");
  EXPECT_EQ(j["held_out"]["controls"][0]["chosen"], "control w=0.5");
  EXPECT_EQ(j["groups"][3]["vector"], "control");
  EXPECT_NE(report_svg(r).find("control accuracy"), std::string::npos);
}

TEST(Report, MajorityTiesGoToTheFirstSampleNotTheFirstLineWritten) {
  test::TempDir dir;
  // Two samples that disagree, written in completion order (sample 1 first):
  // the tie must go to sample 0 ("3", wrong), whatever order the file has.
  const auto path = (dir / "w0.jsonl").string();
  std::ofstream(path) << json{{"id", "p"}, {"sample", 1}, {"label", "w=0"}, {"w", 0}, {"answer", "7"},
                              {"response", "\\boxed{7}"}}.dump()
                      << "\n"
                      << json{{"id", "p"}, {"sample", 0}, {"label", "w=0"}, {"w", 0}, {"answer", "7"},
                              {"response", "\\boxed{3}"}}.dump()
                      << "\n";
  ReportOptions o;
  o.inputs = {path};
  EXPECT_EQ(group(build_report(o), "w=0").maj, 0.0);
}

// Each problem is solved in exactly one of its 4 samples: pass@4 = 1 says
// little, pass@1 = avg@k = 0.25, pass@2 = 1 - C(3,2)/C(4,2) = 0.5.
TEST(Report, PassAtKForKBelowTheSamplesUsesTheUnbiasedEstimator) {
  test::TempDir dir;
  ReportOptions o;
  o.inputs = {write_results(dir, "w=0", 0, 10, 4, [](int i, int s) { return (i + s) % 4 == 0; })};
  const Report r = build_report(o);
  const auto& g = group(r, "w=0");
  EXPECT_EQ(g.pass, (std::map<int, double>{{1, 0.25}, {2, 0.5}, {4, 1.0}}));
  const std::string text = format_report(r);
  EXPECT_NE(text.find("pass@2 pass@4"), std::string::npos) << text;
  EXPECT_EQ(report_json(r)["groups"][0]["pass_at"]["2"], 0.5);
  EXPECT_EQ(report_json(r)["groups"][0]["pass_at_k"], 1.0);
}

TEST(Report, TheStyleColumnIsTheShareOfResponsesMatchingTheStylePattern) {
  test::TempDir dir;
  ReportOptions o;
  o.style_pattern = "です。";
  const auto path = (dir / "w0.jsonl").string();
  std::ofstream out(path);
  for (int s = 0; s < 4; ++s) {
    out << json{{"id", "p"}, {"sample", s}, {"label", "w=0"}, {"w", 0}, {"answer", "7"},
                {"response", s == 0 ? "答え：7" : "答えは7です。"}}.dump()
        << "\n";
  }
  out.close();
  o.inputs = {path};
  const Report r = build_report(o);
  EXPECT_EQ(group(r, "w=0").style, 0.75);
  ASSERT_TRUE(r.samples[0].problems.at("p").samples[1].style.has_value());
  EXPECT_EQ(*r.samples[0].problems.at("p").samples[1].style, (std::pair<size_t, size_t>{10, 19}));  // the bytes of です。
  EXPECT_NE(format_report(r).find(" style "), std::string::npos);
  EXPECT_EQ(report_json(r)["groups"][0]["style_rate"], 0.75);
}

// Five w against one baseline: the large gains hold after Holm's correction,
// a gain whose own interval barely excludes zero is not claimed.
TEST(Report, EveryGainIsOneComparisonAndHolmFlagsThoseThatHold) {
  test::TempDir dir;
  ReportOptions o;
  const auto base = [](int i, int) { return i % 5 == 0; };
  o.inputs = {write_results(dir, "w=0", 0, 200, 1, base),
              write_results(dir, "w=0.5", 0.5, 200, 1,
                            [&](int i, int s) {
                              const bool lost = i % 5 == 0 && i < 30, gained = i % 5 == 1 && i < 80;
                              return (base(i, s) && !lost) || gained;
                            }),
              write_results(dir, "w=1", 1, 200, 1, [](int i, int) { return i % 5 != 4; }),
              write_results(dir, "w=1.5", 1.5, 200, 1, base),
              write_results(dir, "w=2", 2, 200, 1, [](int, int) { return true; }),
              write_results(dir, "w=3", 3, 200, 1, [](int, int) { return false; })};
  const Report r = build_report(o);
  EXPECT_EQ(r.comparisons, 5u);
  EXPECT_TRUE(group(r, "w=1").holm_significant);
  EXPECT_TRUE(group(r, "w=2").holm_significant);
  EXPECT_TRUE(group(r, "w=3").holm_significant);  // a significant loss
  EXPECT_FALSE(group(r, "w=1.5").holm_significant);
  const auto& small = group(r, "w=0.5");  // 16 problems gained, 6 lost: +0.05
  EXPECT_GT(small.delta_ci.low, 0.0);
  EXPECT_GT(small.delta_p, 0.05 / 2);  // Holm's threshold for the fourth smallest of five p-values
  EXPECT_FALSE(small.holm_significant);
  EXPECT_NE(format_report(r).find("5 gain(s) compared with w=0; holm: yes"), std::string::npos);
  EXPECT_EQ(report_json(r)["groups"][1]["delta_vs_baseline"]["holm_significant"], false);
}

TEST(Report, SeveralBenchmarksGetOneReportEachAndASummaryRowPerLabel) {
  test::TempDir dir;
  const auto path = (dir / "all.jsonl").string();
  std::ofstream out(path);
  for (const auto& [benchmark, correct_at_w1] : {std::pair{"aime", "7"}, std::pair{"mgsm", "3"}}) {
    for (const auto& [label, w] : {std::pair{"w=0", 0}, std::pair{"w=1", 1}}) {
      for (int i = 0; i < 4; ++i) {
        out << json{{"id", fmt::format("p{}", i)}, {"sample", 0}, {"label", label}, {"w", w}, {"benchmark", benchmark},
                    {"answer", "7"}, {"response", fmt::format("\\boxed{{{}}}", w == 1 ? correct_at_w1 : "3")}}.dump()
            << "\n";
      }
    }
  }
  out.close();
  ReportOptions o;
  o.inputs = {path};
  const auto reports = build_reports(o);
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports[0].benchmark, "aime");
  EXPECT_EQ(group(reports[0], "w=1").avg, 1.0);
  EXPECT_EQ(group(reports[1], "w=1").avg, 0.0);
  const std::string summary = format_summary(reports);
  EXPECT_NE(summary.find("aime"), std::string::npos);
  EXPECT_NE(summary.find("w=1             1.000 [0.510, 1.000]    0.000 [0.000, 0.490]"), std::string::npos) << summary;
  const json j = reports_json(reports);
  EXPECT_EQ(j["benchmarks"].size(), 2u);
  EXPECT_EQ(j["summary"][1]["avg_at_k"]["mgsm"], 0.0);
  EXPECT_THROW(build_report(o), Error);
}

TEST(Report, RecordsThatNameNoBenchmarkJoinTheOnlyOneNamed) {
  test::TempDir dir;
  const auto path = (dir / "w0.jsonl").string();
  std::ofstream(path) << json{{"id", "a"}, {"sample", 0}, {"label", "w=0"}, {"answer", "7"}, {"response", "\\boxed{7}"},
                              {"run", "old"}}.dump()
                      << "\n"
                      << json{{"id", "b"}, {"sample", 0}, {"label", "w=1"}, {"answer", "7"}, {"response", "\\boxed{7}"},
                              {"run", "new"}, {"benchmark", "ja"}}.dump()
                      << "\n";
  ReportOptions o;
  o.inputs = {path};
  const Report r = build_report(o);
  EXPECT_EQ(r.benchmark, "ja");
  EXPECT_EQ(r.groups.size(), 2u);
}

}  // namespace
}  // namespace rvec
