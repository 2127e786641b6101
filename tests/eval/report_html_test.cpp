// The HTML report: one self-contained file, and its drill-down working in a
// real headless browser (Debian's chromium; skipped with a message where it
// cannot start). The browser test saves a screenshot under
// build/tests/test-output/.
#include "eval/report_html.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "test_util.hpp"

namespace rvec {
namespace {

using nlohmann::json;
using test::TempDir;

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size())) ++n;
  return n;
}

// Three models on six problems, two samples each; every response names its
// model, problem and sample ("m:w=1 p03 s0"). The baseline (w=0) is wrong on
// p01 and p03, has no answer in p05 sample 0, and w=1 is cut off on p04, so
// "changed verdict vs baseline" = {p01, p03, p05}, "no answer" = {p05},
// "cut off" = {p04}. Only w=0 and w=1 close politely (です。).
std::vector<std::string> write_study(const TempDir& dir) {
  std::vector<std::string> paths;
  for (const auto& [label, w] : {std::pair{"w=0", 0.0}, std::pair{"w=1", 1.0}, std::pair{"post", -1.0}}) {
    const auto path = (dir / (std::string(label) + ".jsonl")).string();
    std::ofstream out(path);
    for (int i = 0; i < 6; ++i) {
      for (int s = 0; s < 2; ++s) {
        const std::string marker = fmt::format("m:{} p{:02} s{}", label, i, s);
        std::string response = marker + (label == std::string("post") ? " Answer: 7" : " 答えは7です。");
        if (label == std::string("w=0") && i % 2 == 1 && i != 5) response = marker + " 答えは3です。";
        if (label == std::string("w=0") && i == 5 && s == 0) response = marker + " わかりません";
        json r = {{"id", fmt::format("p{:02}", i)}, {"sample", s}, {"label", label}, {"answer", "7"},
                  {"response", response}, {"prompt", fmt::format("question {}: </script><b>", i)},
                  {"finish_reason", label == std::string("w=1") && i == 4 ? "length" : "stop"}};
        if (w >= 0) r["w"] = w;
        out << r.dump() << "\n";
      }
    }
    paths.push_back(path);
  }
  return paths;
}

std::string html_report(const TempDir& dir) {
  std::string command = "report --style-pattern です。 --html " + (dir / "r.html").string();
  for (const auto& path : write_study(dir)) command += " " + path;
  const auto run = test::run_rvec(command);
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("answers and tables: " + (dir / "r.html").string()), std::string::npos) << run.output;
  return test::read_file(dir / "r.html");
}

TEST(ReportHtml, IsOneSelfContainedFileWithEveryResponse) {
  TempDir dir;
  const std::string html = html_report(dir);
  for (const char* outside : {"<link", " src=", "href=", "url(", "@import", "https://"}) {
    EXPECT_EQ(html.find(outside), std::string::npos) << outside;
  }
  EXPECT_EQ(count(html, "http://"), count(html, "http://www.w3.org/2000/svg"));  // the SVG namespace, never fetched
  EXPECT_EQ(count(html, "</script>"), 2u);  // the question's "</script>" cannot close the data block
  EXPECT_EQ(count(html, "<svg"), 1u);
  EXPECT_NE(html.find("<th>style</th>"), std::string::npos);
  EXPECT_NE(html.find("m:w=1 p03 s1 答えは7です。"), std::string::npos);
}

TEST(ReportHtml, SeveralBenchmarksGetOneSectionEachAndASummary) {
  TempDir dir;
  std::ofstream out(dir / "r.jsonl");
  for (const char* benchmark : {"ja", "en"}) {
    for (const char* label : {"w=0", "w=1"}) {
      out << json{{"id", "p1"}, {"sample", 0}, {"label", label}, {"benchmark", benchmark}, {"answer", "7"},
                  {"response", "\\boxed{7}"}, {"w", label[2] - '0'}}.dump()
          << "\n";
    }
  }
  out.close();
  const auto run = test::run_rvec("report " + (dir / "r.jsonl").string() + " --html " + (dir / "r.html").string() +
                                  " --plot " + (dir / "p.svg").string());
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("== en =="), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("summary: avg@k [95% CI] per benchmark"), std::string::npos) << run.output;
  EXPECT_TRUE(std::filesystem::exists(dir / "p-ja.svg"));
  EXPECT_TRUE(std::filesystem::exists(dir / "p-en.svg"));
  const std::string html = test::read_file(dir / "r.html");
  EXPECT_EQ(count(html, "<svg"), 2u);
  EXPECT_NE(html.find("<h2>Summary: avg@k [95% CI] per benchmark</h2>"), std::string::npos);
}

// Headless chromium as root: no sandbox, no GPU, no network, a fresh profile.
class Browser {
 public:
  explicit Browser(const TempDir& dir) : profile_((dir / "chromium-profile").string()) {}
  test::RunResult run(const std::string& args) const {
    return test::run_shell(
        "timeout 90 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
        "--disable-background-networking --disable-component-update --disable-sync --user-data-dir=" +
        profile_ + " " + args + " 2>/dev/null");
  }
  std::string dom(const std::string& url) const { return run("--dump-dom '" + url + "'").output; }
  // Why the browser cannot be used here, or "" when it works.
  std::string unusable() const {
    if (test::run_shell("command -v chromium").exit_code != 0) return "chromium is not installed (scripts/setup.sh)";
    const auto blank = run("--dump-dom about:blank");
    if (blank.exit_code != 0 || blank.output.find("<html") == std::string::npos) {
      return fmt::format("chromium cannot start (exit {})", blank.exit_code);
    }
    return "";
  }

 private:
  std::string profile_;
};

// The drill-down's part of the page (the data block after it holds every response).
std::string detail_of(const std::string& dom) {
  const auto begin = dom.find("id=\"detail\"");
  return begin == std::string::npos ? "" : dom.substr(begin, dom.find("<script", begin) - begin);
}

std::vector<std::string> problem_rows(const std::string& dom) {
  std::vector<std::string> ids;
  for (auto at = dom.find("data-id=\""); at != std::string::npos; at = dom.find("data-id=\"", at + 1)) {
    ids.push_back(dom.substr(at + 9, dom.find('"', at + 9) - at - 9));
  }
  return ids;
}

TEST(ReportHtml, TheDrillDownWorksInAHeadlessBrowser) {
  TempDir dir;
  const std::string html = html_report(dir);
  ASSERT_FALSE(html.empty());
  const Browser browser(dir);
  if (const std::string why = browser.unusable(); !why.empty()) GTEST_SKIP() << why;
  const std::string page = "file://" + (dir / "r.html").string();

  const std::string dom = browser.dom(page + "#problem=p03");
  EXPECT_EQ(problem_rows(dom), (std::vector<std::string>{"p00", "p01", "p02", "p03", "p04", "p05"})) << dom;
  EXPECT_NE(dom.find("6 of 6 problems"), std::string::npos);
  const std::string chosen = detail_of(dom);
  EXPECT_NE(chosen.find("data-problem=\"p03\""), std::string::npos) << dom;
  EXPECT_EQ(count(chosen, "class=\"cell "), 6u);  // 3 models x 2 samples, side by side
  for (const char* response : {"m:w=0 p03 s0 答えは3<mark>です。</mark>", "m:w=1 p03 s1 答えは7", "m:post p03 s0 Answer: 7"}) {
    EXPECT_NE(chosen.find(response), std::string::npos) << response;
  }
  EXPECT_EQ(chosen.find("m:w=1 p04"), std::string::npos);  // only the chosen problem's responses
  EXPECT_EQ(count(chosen, "<mark>です。</mark>"), 4u);     // the style match, in w=0's and w=1's responses
  EXPECT_EQ(count(chosen, "class=\"cell v-wrong\""), 2u);  // the baseline's two wrong answers
  EXPECT_EQ(count(chosen, "v-correct changed\""), 4u);    // w=1 and post turn both into correct ones
  EXPECT_NE(chosen.find("answer: 3 (rule answer_is)"), std::string::npos);
  EXPECT_EQ(count(chosen, "class=\"badge ja\""), 4u);      // w=0 and w=1 answer in Japanese
  EXPECT_EQ(count(chosen, "class=\"badge not-ja\""), 2u);  // post in English
  EXPECT_EQ(count(chosen, "class=\"badge no-style\""), 2u);
  EXPECT_NE(chosen.find("question 3: &lt;/script&gt;&lt;b&gt;"), std::string::npos);

  EXPECT_EQ(problem_rows(browser.dom(page + "#filter=changed")), (std::vector<std::string>{"p01", "p03", "p05"}));
  EXPECT_EQ(problem_rows(browser.dom(page + "#filter=no_answer")), (std::vector<std::string>{"p05"}));
  EXPECT_EQ(problem_rows(browser.dom(page + "#filter=cut")), (std::vector<std::string>{"p04"}));
  EXPECT_EQ(problem_rows(browser.dom(page + "#filter=cut&model=post")), (std::vector<std::string>{}));

  const std::filesystem::path shots = RVEC_TEST_OUTPUT_DIR;
  std::filesystem::create_directories(shots);
  const auto png = shots / "report-html.png";
  std::filesystem::remove(png);
  browser.run("--window-size=1400,1400 --screenshot=" + png.string() + " '" + page + "#problem=p03'");
  ASSERT_TRUE(std::filesystem::exists(png));
  EXPECT_EQ(test::read_file(png).substr(1, 3), "PNG");
  std::cout << "screenshot: " << png.string() << "\n";
  RecordProperty("screenshot", png.string());
}

}  // namespace
}  // namespace rvec
