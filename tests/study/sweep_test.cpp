// rvec sweep end to end on tiny models: build, serve, evaluate, report;
// a second run reuses everything; servers never outlive the sweep.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <nlohmann/json.hpp>

#include "base/error.hpp"
#include "base/text.hpp"
#include "hf/model_folder.hpp"
#include "hf/tensor_names.hpp"
#include "merge/open_family.hpp"
#include "merge/reference.hpp"
#include "study/sweep.hpp"
#include "serve/serve_util.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

using nlohmann::json;
using test::TempDir;

size_t lines(const std::filesystem::path& p) {
  std::ifstream in(p);
  size_t n = 0;
  for (std::string line; std::getline(in, line);) n += !line.empty();
  return n;
}

// How many times `text` holds `needle`.
size_t occurrences(const std::string& text, const std::string& needle) {
  size_t count = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size())) ++count;
  return count;
}

// A `sleep` command line no other process on the machine has: `seconds`, then
// this process's id as a fixed-width fraction (so no id is a prefix of another).
std::string own_sleep(int seconds) { return fmt::format("sleep {}.{:07}", seconds, ::getpid()); }

// Number of processes whose command line mentions `needle` (read from /proc).
int processes_mentioning(const std::string& needle) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const auto name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos || name == std::to_string(getpid())) continue;
    std::string cmdline;
    try {  // a process that exits while its cmdline is read makes libstdc++'s filebuf throw (ESRCH)
      std::ifstream in(entry.path() / "cmdline", std::ios::binary);
      cmdline.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    } catch (const std::ios_base::failure&) {
      continue;
    }
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    count += cmdline.find(needle) != std::string::npos;
  }
  return count;
}

// The tiny chat models as pre, post, target and control, or, with `family`,
// that family's pre, post, target and control folders.
void write_family_and_recipe(const TempDir& dir, const std::string& serve_block, const std::filesystem::path& family = {}) {
  if (family.empty()) {
    test::write_chat_model(dir / "pre", 1);
    test::write_chat_model(dir / "post", 2);
    test::write_chat_model(dir / "target", 3);
    test::write_chat_model(dir / "control", 4);
  }
  std::ofstream(dir / "ja.jsonl") << R"({"id": "a", "problem": "1+1は？", "answer": "2"})" << "\n"
                                  << R"({"id": "b", "problem": "2+3は？", "answer": "5"})" << "\n"
                                  << R"({"id": "c", "problem": "4+4は？", "answer": "8"})" << "\n";
  std::ofstream(dir / "en.jsonl") << R"({"id": "a", "problem": "1+1?", "answer": "2"})" << "\n";
  const auto p = [&](const char* name) { return (dir / name).string(); };
  const auto model = [&](const char* name) { return ((family.empty() ? dir.path() : family) / name).string(); };
  std::ofstream(dir / "sweep.yaml") << "pre: " << model("pre") << "\npost: " << model("post") << "\ntarget: " << model("target")
                                    << "\noutput: " << p("out") << "\nweights: [0, 0.5, 1]\ninclude_post: true\n"
                                    << "controls:\n  - name: control\n    post: " << model("control") << "\n    weights: [0.5, 1]\n"
                                    << "benchmarks:\n  - name: ja\n    data: " << p("ja.jsonl")
                                    << "\n    samples: 2\n    max_tokens: 6\n    temperature: 0.8\n    dev_fraction: 0.5\n"
                                    << "    style_pattern: \"[^ ]\"\n"
                                    << "  - name: en\n    data: " << p("en.jsonl") << "\n    samples: 2\n    max_tokens: 6\n"
                                    << serve_block;
}

TEST(Sweep, BuildsServesEvaluatesReportsAndResumes) {
  TempDir dir;
  write_family_and_recipe(dir, "serve:\n  concurrency: 4\n");
  const auto dry = test::run_rvec("sweep " + (dir / "sweep.yaml").string() + " --dry-run");
  ASSERT_EQ(dry.exit_code, 0) << dry.output;
  EXPECT_NE(dry.output.find("4 models to build"), std::string::npos) << dry.output;
  EXPECT_NE(dry.output.find("requests: 48 to send"), std::string::npos) << dry.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "out"));

  const auto first = test::run_rvec("sweep " + (dir / "sweep.yaml").string());
  ASSERT_EQ(first.exit_code, 0) << first.output;
  for (const char* model : {"w0.5", "w1", "control/w0.5", "control/w1"}) {
    EXPECT_TRUE(std::filesystem::exists(dir / "out" / "models" / model / "model.safetensors")) << model;
  }
  for (const char* name : {"target", "w0.5", "w1", "post", "control-w0.5", "control-w1"}) {
    EXPECT_EQ(lines(dir / "out" / "results" / "ja" / (std::string(name) + ".jsonl")), 6u) << name;
  }
  std::string first_control_line;
  std::getline(std::ifstream(dir / "out" / "results" / "ja" / "control-w0.5.jsonl"), first_control_line);
  const auto control_record = json::parse(first_control_line);
  EXPECT_EQ(control_record["vector"], "control");
  EXPECT_EQ(control_record["w"], 0.5);
  const auto report = json::parse(test::read_file(dir / "out" / "report-ja.json"));
  EXPECT_EQ(report["baseline"], "w=0");
  EXPECT_EQ(report["groups"].size(), 6u);
  EXPECT_TRUE(report["held_out"].contains("chosen"));
  EXPECT_EQ(report["held_out"]["controls"][0]["vector"], "control");
  EXPECT_TRUE(std::filesystem::exists(dir / "out" / "report-ja.svg"));
  EXPECT_TRUE(report["groups"][0].contains("style_rate"));
  EXPECT_EQ(report["benchmark"], "ja");
  EXPECT_NE(test::read_file(dir / "out" / "report-ja.html").find("id=\"rvec-data\""), std::string::npos);
  EXPECT_NE(test::read_file(dir / "out" / "report-en.html").find("id=\"rvec-data\""), std::string::npos);
  EXPECT_NE(test::read_file(dir / "out" / "report.html").find("Summary: avg@k"), std::string::npos);
  const std::string summary = test::read_file(dir / "out" / "report-summary.txt");
  EXPECT_NE(summary.find("label           ja                      en"), std::string::npos) << summary;
  EXPECT_NE(summary.find("control w=0.5"), std::string::npos) << summary;
  EXPECT_EQ(processes_mentioning((dir / "out" / "models").string()), 0);

  const auto second = test::run_rvec("sweep " + (dir / "sweep.yaml").string());
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_NE(second.output.find("reused"), std::string::npos) << second.output;
  EXPECT_EQ(second.output.find("serving"), std::string::npos) << second.output;  // nothing left to ask
  EXPECT_EQ(lines(dir / "out" / "results" / "ja" / "w1.jsonl"), 6u);
}

// format: gguf writes every merged model as one GGUF file of the recipe's
// type, served from the file by the built-in engine; a second run reuses them.
TEST(Sweep, GgufModelsAreBuiltAsFilesAndServedByTheEngine) {
  TempDir dir;
  write_family_and_recipe(dir, "format: gguf\ntype: q8_0\n", test::source_dir() / "demo" / "family");
  // The plan counts the disk the GGUF files take, not the safetensors size.
  const auto dry = test::run_rvec("sweep " + (dir / "sweep.yaml").string() + " --dry-run");
  ASSERT_EQ(dry.exit_code, 0) << dry.output;
  const auto planned = dry.output.find("disk: 4 models to build x ");
  ASSERT_NE(planned, std::string::npos) << dry.output;
  const auto first = test::run_rvec("sweep " + (dir / "sweep.yaml").string());
  ASSERT_EQ(first.exit_code, 0) << first.output;
  for (const char* model : {"w0.5.gguf", "w1.gguf", "control/w0.5.gguf", "control/w1.gguf"}) {
    EXPECT_TRUE(std::filesystem::is_regular_file(dir / "out" / "models" / model)) << model;
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "out" / "models" / "w1"));
  EXPECT_NE(first.output.find("serving " + (dir / "out" / "models" / "w1.gguf").string()), std::string::npos)
      << first.output;
  for (const char* name : {"target", "w0.5", "w1", "post", "control-w0.5", "control-w1"}) {
    EXPECT_EQ(lines(dir / "out" / "results" / "ja" / (std::string(name) + ".jsonl")), 6u) << name;
  }
  const std::string size = human_bytes(std::filesystem::file_size(dir / "out" / "models" / "w1.gguf"));
  EXPECT_EQ(dry.output.substr(planned + 26, size.size() + 3), size + " = ") << dry.output;
  const auto inspect = test::run_rvec("inspect " + (dir / "out" / "models" / "w1.gguf").string() + " --json");
  ASSERT_EQ(inspect.exit_code, 0) << inspect.output;
  EXPECT_NE(inspect.output.find("\"Q8_0\""), std::string::npos) << inspect.output;
  EXPECT_EQ(processes_mentioning((dir / "out" / "models").string()), 0);

  const auto second = test::run_rvec("sweep " + (dir / "sweep.yaml").string());
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_NE(second.output.find("reused " + (dir / "out" / "models" / "w1.gguf").string()), std::string::npos)
      << second.output;
  EXPECT_EQ(second.output.find("serving"), std::string::npos) << second.output;
}

// A sweep killed while its build put the GGUF files in place, after the
// first, builds the rest when run again, keeps the first, and leaves no
// partial folder behind.
TEST(Sweep, AGgufBuildKilledAfterItsFirstFileResumes) {
  TempDir dir;
  write_family_and_recipe(dir, "format: gguf\ntype: q8_0\n", test::source_dir() / "demo" / "family");
  const auto killed = test::run_shell("env RVEC_TEST_KILL_WHILE_FINISHING=2 " + std::string(RVEC_CLI_PATH) + " sweep " +
                                      (dir / "sweep.yaml").string() + "; echo exit=$?");
  ASSERT_NE(killed.output.find("exit=137"), std::string::npos) << killed.output;
  // With another post the file in place is not this recipe's: refused, with what to do.
  std::string other = test::read_file(dir / "sweep.yaml");
  const std::string family = (test::source_dir() / "demo" / "family").string();
  other.replace(other.find(family + "/post"), family.size() + 5, family + "/target");
  test::write_file(dir / "other.yaml", other);
  const auto refused = test::run_rvec("sweep " + (dir / "other.yaml").string());
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.output.find("w0.5.gguf: already exists (delete it to rebuild it with this recipe)"), std::string::npos)
      << refused.output;
  const auto again = test::run_rvec("sweep " + (dir / "sweep.yaml").string());
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("reused " + (dir / "out" / "models" / "w0.5.gguf").string()), std::string::npos)
      << again.output;
  for (const char* model : {"w0.5.gguf", "w1.gguf", "control/w0.5.gguf", "control/w1.gguf"}) {
    EXPECT_TRUE(std::filesystem::is_regular_file(dir / "out" / "models" / model)) << model;
  }
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir / "out" / "models")) {
    EXPECT_FALSE(e.path().filename().string().starts_with(".")) << e.path();
  }
}

TEST(Sweep, SpreadsModelsOverSeveralWorkers) {
  TempDir dir;
  // Two command templates, one worker each; every server records which worker started it.
  const std::string serve = fmt::format("exec {} serve {{model}} --port {{port}} --served-model-name {{name}}", RVEC_CLI_PATH);
  const auto marked = [&](int worker) {
    return fmt::format("\"echo {{name}} >> {}/worker{} && {}\"", dir.path().string(), worker, serve);
  };
  write_family_and_recipe(dir, "serve:\n  commands:\n    - " + marked(0) + "\n    - " + marked(1) + "\n");
  const auto run = test::run_rvec("sweep " + (dir / "sweep.yaml").string());
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("2 at a time"), std::string::npos) << run.output;
  // Each model is served once, and once more for each port another process took before its server bound it.
  EXPECT_EQ(lines(dir / "worker0") + lines(dir / "worker1"), 6u + occurrences(run.output, "trying another port"))
      << run.output;
  EXPECT_GE(lines(dir / "worker0"), 1u);                            // by both workers
  EXPECT_GE(lines(dir / "worker1"), 1u);
  for (const char* name : {"target", "w0.5", "w1", "post", "control-w0.5", "control-w1"}) {
    EXPECT_EQ(lines(dir / "out" / "results" / "ja" / (std::string(name) + ".jsonl")), 6u) << name;
  }
  EXPECT_EQ(processes_mentioning((dir / "out" / "models").string()), 0);
}

TEST(Sweep, APortTakenBeforeTheServerBindsItIsReplaced) {
  TempDir dir;
  // Each model's first server finds its port taken (as when another process grabs the free port
  // the sweep picked); the sweep picks another port and the second server answers.
  const std::string serve = fmt::format("exec {} serve {{model}} --port {{port}} --served-model-name {{name}}", RVEC_CLI_PATH);
  const std::string first_fails = fmt::format(
      "\"if mkdir {}/taken-{{name}} 2>/dev/null; then echo 'rvec: error: cannot listen on 127.0.0.1:{{port}} (in use)' >&2; "
      "exit 5; fi; {}\"",
      dir.path().string(), serve);
  write_family_and_recipe(dir, "serve:\n  commands:\n    - " + first_fails + "\n");
  const auto run = test::run_rvec("sweep " + (dir / "sweep.yaml").string());
  ASSERT_EQ(run.exit_code, 0) << run.output;
  for (const char* name : {"target", "w0.5", "w1", "post"}) {
    EXPECT_TRUE(std::filesystem::is_directory(dir / (std::string("taken-") + name))) << name;
    EXPECT_EQ(lines(dir / "out" / "results" / "ja" / (std::string(name) + ".jsonl")), 6u) << name;
  }
  EXPECT_EQ(processes_mentioning((dir / "out" / "models").string()), 0);
}

TEST(Sweep, AnotherServerAnsweringAtTheModelsPortIsNotTakenForIt) {
  TempDir dir;
  // A server of another model already listens on the recipe's port, and the model's own server
  // never binds it. The decoy's /health says 200; its /v1/models names another model.
  const test::LocalHttpServer decoy([](httplib::Server& routes) {
    routes.Get("/health", [](const httplib::Request&, httplib::Response& res) { res.set_content("{}", "application/json"); });
    routes.Get("/v1/models", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"object": "list", "data": [{"id": "decoy\nmodel"}, {"id": "b"}, {"id": "c"}, {"id": "d"}, {"id": "e"}]})",
                      "application/json");
    });
  });
  const int port = decoy.port();
  const std::string sleep = own_sleep(319);
  write_family_and_recipe(dir, fmt::format("serve:\n  port: {}\n  command: \"sh -c '{}' {{model}} {{port}} {{name}}\"\n",
                                           port, sleep));
  const auto run = test::run_rvec("sweep " + (dir / "sweep.yaml").string());
  EXPECT_EQ(run.exit_code, 5) << run.output;
  EXPECT_NE(run.output.find(fmt::format("the server answering at http://127.0.0.1:{} is not w=0's: its /v1/models "
                                        "lists `decoy\\x0amodel`, `b`, `c` and 2 more instead of `target`",
                                        port)),
            std::string::npos)
      << run.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "out" / "results" / "ja" / "target.jsonl"));
  EXPECT_EQ(processes_mentioning(sleep), 0);
}

TEST(Sweep, AFailingWorkerStopsTheSweepAndEveryServer) {
  TempDir dir;
  // Worker 0 serves models; worker 1's "server" never answers. The sweep fails naming it, and no
  // server of either worker is left.
  const std::string serve = fmt::format("exec {} serve {{model}} --port {{port}} --served-model-name {{name}}", RVEC_CLI_PATH);
  const std::string sleep = own_sleep(318);
  write_family_and_recipe(dir, "serve:\n  startup_timeout_s: 3\n  commands:\n    - \"" + serve + "\"\n    - \"sh -c '" +
                                   sleep + "' {model} {port}\"\n");
  const auto run = test::run_rvec("sweep " + (dir / "sweep.yaml").string());
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.output.find("did not answer"), std::string::npos) << run.output;
  EXPECT_EQ(processes_mentioning(sleep), 0);
  EXPECT_EQ(processes_mentioning((dir / "out" / "models").string()), 0);
  EXPECT_EQ(processes_mentioning((dir / "target").string()), 0);
}

TEST(Sweep, AServerThatNeverAnswersIsStoppedAndNamed) {
  TempDir dir;
  // A "server" that listens nowhere: the sweep must give up, kill it, and say where its log is.
  const std::string sleep = own_sleep(317);
  write_family_and_recipe(dir, "serve:\n  command: \"sh -c '" + sleep + "' {model} {port}\"\n  startup_timeout_s: 2\n");
  const auto run = test::run_rvec("sweep " + (dir / "sweep.yaml").string());
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.output.find("did not answer"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("logs/target.log"), std::string::npos) << run.output;
  EXPECT_EQ(processes_mentioning(sleep), 0);
  EXPECT_EQ(processes_mentioning((dir / "target").string()), 0);
}

TEST(Sweep, CtrlCStopsTheServerItIsWaitingFor) {
  TempDir dir;
  // The "server" never answers and the sweep would wait a minute for it: SIGINT,
  // sent once the server runs, must end the sweep at once and take the server with it.
  const auto started = dir / "started";
  // A duration no other process on the machine uses, so the count below is this test's own.
  const std::string sleep = own_sleep(316);
  write_family_and_recipe(dir, fmt::format("serve:\n  command: \"sh -c 'touch {}; {}' {{model}} {{port}}\"\n"
                                           "  startup_timeout_s: 60\n",
                                           started.string(), sleep));
  const auto run = test::run_shell(fmt::format(
      "{} sweep {} > {} 2>&1 & pid=$!; "
      "for i in $(seq 400); do [ -e {} ] && break; sleep 0.05; done; "
      "kill -INT $pid; wait $pid; echo \"sweep exit $?\"",
      RVEC_CLI_PATH, (dir / "sweep.yaml").string(), (dir / "sweep.out").string(), started.string()));
  EXPECT_TRUE(std::filesystem::exists(started));
  EXPECT_NE(run.output.find("sweep exit 130"), std::string::npos) << run.output << test::read_file(dir / "sweep.out");
  EXPECT_EQ(processes_mentioning(sleep), 0);
  EXPECT_EQ(processes_mentioning((dir / "target").string()), 0);
}

TEST(Sweep, BadRecipesAreRefusedWithTheLine) {
  TempDir dir;
  std::ofstream(dir / "bad.yaml") << "pre: a\npost: b\ntarget: c\noutput: d\nweights: [0, 1]\nbenchmark: []\n";
  const auto run = test::run_rvec("sweep " + (dir / "bad.yaml").string());
  EXPECT_EQ(run.exit_code, 4);
  EXPECT_NE(run.output.find("bad.yaml:6: unknown field \"benchmark\""), std::string::npos) << run.output;

  std::ofstream(dir / "ports.yaml") << "pre: a\npost: b\ntarget: c\noutput: d\nweights: [0, 1]\n"
                                    << "benchmarks: [{data: x.jsonl}]\nserve: {workers: 2, port: 8000}\n";
  const auto ports = test::run_rvec("sweep " + (dir / "ports.yaml").string());
  EXPECT_EQ(ports.exit_code, 4);
  EXPECT_NE(ports.output.find("2 workers run servers at once"), std::string::npos) << ports.output;

  const std::string head = "pre: a\npost: b\ntarget: c\noutput: d\nweights: [0, 1]\nbenchmarks: [{data: x.jsonl}]\n";
  std::ofstream(dir / "zero.yaml") << head << "controls:\n  - post: e\n    weights: [0, 1]\n";
  const auto zero = test::run_rvec("sweep " + (dir / "zero.yaml").string());
  EXPECT_EQ(zero.exit_code, 4);
  EXPECT_NE(zero.output.find("zero.yaml:9: a control's weights must not include 0"), std::string::npos) << zero.output;
  for (const char* name : {"w1", "post", "../x", "1st"}) {
    std::ofstream(dir / "name.yaml") << head << "controls:\n  - name: \"" << name << "\"\n    post: e\n";
    const auto bad_name = test::run_rvec("sweep " + (dir / "name.yaml").string());
    EXPECT_EQ(bad_name.exit_code, 4) << name;
    EXPECT_NE(bad_name.output.find("name.yaml:8: a control's name must start with a letter"), std::string::npos)
        << bad_name.output;
  }
  const std::pair<std::string, std::string> variants[] = {
      {"variants:\n  - method: tie\n", "bad.yaml:8: unknown merge method \"tie\""},
      {"variants:\n  - method: ties\n    params: {gamma: 0.1}\n", "bad.yaml:9: merge method ties takes no parameter \"gamma\""},
      {"variants:\n  - {method: ties}\n  - {method: ties, params: {density: 0.5}}\n", "two controls, variants or ablations are named \"ties\""},
      {"variants:\n  - {name: ties}\n", "a variant needs \"method\""},
      {"ablations:\n  - {name: a, keep: [attention, heads]}\n", "bad.yaml:8: unknown part \"heads\" of the vector"},
      {"ablations:\n  - {name: a, drop: [layer x]}\n", "bad.yaml:8: layer range \"x\""},
      {"ablations:\n  - {name: a, keep: [mlp], drop: [mlp]}\n", "an ablation needs either \"keep\" or \"drop\""},
      {"ablations:\n  - {name: a, keep: []}\n", "field \"keep\" must be a list of parts"},
      {"ablations:\n  - {keep: [mlp]}\n", "an ablation needs \"name\""},
      {"ablations:\n  - {name: ties, keep: [mlp]}\nvariants:\n  - {method: ties}\n", "two controls, variants or ablations"},
      {"controls:\n  - {post: e, match_norms: 2}\n", "field \"match_norms\" must be true or false"},
      {"type: q8_0\n", "bad.yaml:7: field \"type\" is for GGUF models (format: gguf)"},
      {"format: gguf\n", "bad.yaml:7: GGUF models need their type"},
      {"format: gguf\ntype: q3_k\n", "bad.yaml:8: type \"q3_k\" is not f32, f16, bf16, q8_0 or q4_k_m"},
      {"format: onnx\n", "bad.yaml:7: field \"format\" must be safetensors or gguf"},
  };
  for (const auto& [yaml, message] : variants) {
    std::ofstream(dir / "bad.yaml") << head << yaml;
    const auto bad = test::run_rvec("sweep " + (dir / "bad.yaml").string());
    EXPECT_EQ(bad.exit_code, 4) << yaml;
    EXPECT_NE(bad.output.find(message), std::string::npos) << yaml << bad.output;
  }
}

// Variants: the reasoning vector by other merge methods, each built in one
// read pass for its weights, evaluated, and reported as its own series.
TEST(Sweep, VariantsAreBuiltByTheirMethodAndReportedAsSeries) {
  TempDir dir;
  test::write_chat_model(dir / "pre", 1);
  test::write_chat_model(dir / "post", 2);
  test::write_chat_model(dir / "target", 3);
  std::ofstream(dir / "ja.jsonl") << R"({"id": "a", "problem": "1+1は？", "answer": "2"})" << "\n"
                                  << R"({"id": "b", "problem": "2+3は？", "answer": "5"})" << "\n";
  const auto p = [&](const char* name) { return (dir / name).string(); };
  std::ofstream(dir / "sweep.yaml") << "pre: " << p("pre") << "\npost: " << p("post") << "\ntarget: " << p("target")
                                    << "\noutput: " << p("out") << "\nweights: [0, 1]\ninclude_post: false\n"
                                    << "variants:\n  - name: ties30\n    method: ties\n    params: {density: 0.3}\n"
                                    << "    weights: [0.5, 1]\n  - method: dare_ties\n    params: {density: 0.5, seed: 3}\n"
                                    << "benchmarks:\n  - name: ja\n    data: " << p("ja.jsonl")
                                    << "\n    samples: 1\n    max_tokens: 4\n    dev_fraction: 0.5\n";
  const auto dry = test::run_rvec("sweep " + p("sweep.yaml") + " --dry-run");
  ASSERT_EQ(dry.exit_code, 0) << dry.output;
  EXPECT_NE(dry.output.find("4 models to build"), std::string::npos) << dry.output;

  const auto run = test::run_rvec("sweep " + p("sweep.yaml"));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  for (const auto& [model, method] : {std::pair{"ties30/w0.5", "ties"}, std::pair{"ties30/w1", "ties"},
                                      std::pair{"dare_ties/w1", "dare_ties"}, std::pair{"w1", "task_arithmetic"}}) {
    const auto provenance = json::parse(test::read_file(dir / "out" / "models" / model / "rvec_provenance.json"));
    EXPECT_EQ(provenance["method"]["name"], method) << model;
  }
  // The same model as `rvec merge` makes with the same method and values.
  const auto merge = test::run_rvec("merge --pre " + p("pre") + " --post " + p("post") + " --target " + p("target") +
                                    " -w 1 --method ties --density 0.3 -q -o " + p("merged"));
  ASSERT_EQ(merge.exit_code, 0) << merge.output;
  EXPECT_TRUE(test::read_file(dir / "merged" / "model.safetensors") ==
              test::read_file(dir / "out" / "models" / "ties30" / "w1" / "model.safetensors"));
  std::string first_line;
  std::getline(std::ifstream(dir / "out" / "results" / "ja" / "ties30-w0.5.jsonl"), first_line);
  EXPECT_EQ(json::parse(first_line)["vector"], "ties30");
  const auto report = json::parse(test::read_file(dir / "out" / "report-ja.json"));
  EXPECT_EQ(report["groups"].size(), 5u);  // w=0, w=1, ties30 x 2, dare_ties x 1
  std::set<std::string> series;
  for (const auto& choice : report["held_out"]["controls"]) series.insert(choice["vector"]);
  EXPECT_EQ(series, (std::set<std::string>{"ties30", "dare_ties"}));
}

// The fair controls and the ablations: a control at the reasoning vector's
// per-tensor norms, a random direction with those norms, parts of the
// vector; each built in its own pass and reported as its own series.
TEST(Sweep, FairControlsAndAblationsAreBuiltAndReportedAsSeries) {
  TempDir dir;
  test::write_chat_model(dir / "pre", 1);
  test::write_chat_model(dir / "post", 2);
  test::write_chat_model(dir / "target", 3);
  test::write_chat_model(dir / "control", 4);
  std::ofstream(dir / "ja.jsonl") << R"({"id": "a", "problem": "1+1は？", "answer": "2"})" << "\n"
                                  << R"({"id": "b", "problem": "2+3は？", "answer": "5"})" << "\n";
  const auto p = [&](const char* name) { return (dir / name).string(); };
  std::ofstream(dir / "sweep.yaml") << "pre: " << p("pre") << "\npost: " << p("post") << "\ntarget: " << p("target")
                                    << "\noutput: " << p("out") << "\nweights: [0, 1]\ninclude_post: false\n"
                                    << "controls:\n  - {name: matched, post: " << p("control") << ", match_norms: true}\n"
                                    << "variants:\n  - {name: random, method: random, params: {seed: 2}}\n"
                                    << "ablations:\n  - {name: mlp, keep: [mlp]}\n"
                                    << "  - {name: no-embed, drop: [embeddings], weights: [0.5, 1]}\n"
                                    << "benchmarks:\n  - name: ja\n    data: " << p("ja.jsonl")
                                    << "\n    samples: 1\n    max_tokens: 4\n    dev_fraction: 0.5\n";
  const auto run = test::run_rvec("sweep " + p("sweep.yaml"));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const auto models = dir / "out" / "models";
  for (const auto& [model, method] : {std::pair{"matched/w1", "norm_matched"}, std::pair{"random/w1", "random"},
                                      std::pair{"mlp/w1", "task_arithmetic"}, std::pair{"no-embed/w0.5", "task_arithmetic"}}) {
    const auto provenance = json::parse(test::read_file(models / model / "rvec_provenance.json"));
    EXPECT_EQ(provenance["method"]["name"], method) << model;
  }
  const auto target = ModelFolder::open(p("target"));
  const auto merged = ModelFolder::open((models / "w1").string());
  const auto mlp = ModelFolder::open((models / "mlp" / "w1").string());
  const auto no_embed = ModelFolder::open((models / "no-embed" / "w1").string());
  const auto matched = ModelFolder::open((models / "matched" / "w1").string());
  const auto random = ModelFolder::open((models / "random" / "w1").string());
  // ||out - target|| of one tensor.
  const auto change = [&](const ModelFolder& out, const ModelTensor& t) {
    const uint64_t n = t.info->element_count();
    const auto a = test::ref_values(*out.find(t.name()), n), b = test::ref_values(t, n);
    double sum = 0;
    for (uint64_t j = 0; j < n; ++j) sum += (static_cast<double>(a[j]) - b[j]) * (static_cast<double>(a[j]) - b[j]);
    return std::sqrt(sum);
  };
  size_t mlp_tensors = 0;
  for (const auto& t : target->tensors()) {
    const std::string& name = t.name();
    const bool is_mlp = name.find(".mlp.") != std::string::npos;
    mlp_tensors += is_mlp;
    EXPECT_EQ(test::tensor_bytes(*mlp, name), test::tensor_bytes(is_mlp ? *merged : *target, name)) << name;
    EXPECT_EQ(test::tensor_bytes(*no_embed, name),
              test::tensor_bytes(is_vocab_tensor(name) ? *target : *merged, name))
        << name;
    const double v = change(*merged, t);
    if (v == 0 || t.info->element_count() < 64) continue;
    EXPECT_NEAR(change(*matched, t), v, 0.05 * v) << name;  // within the output's rounding
    EXPECT_NEAR(change(*random, t), v, 0.05 * v) << name;
    EXPECT_NE(test::tensor_bytes(*random, name), test::tensor_bytes(*merged, name)) << name;
  }
  EXPECT_GT(mlp_tensors, 0u);
  const auto report = json::parse(test::read_file(dir / "out" / "report-ja.json"));
  EXPECT_EQ(report["groups"].size(), 7u);  // w=0, w=1, matched, random, mlp, no-embed x 2
  std::set<std::string> series;
  for (const auto& choice : report["held_out"]["controls"]) series.insert(choice["vector"]);
  EXPECT_EQ(series, (std::set<std::string>{"matched", "random", "mlp", "no-embed"}));
}

// A control whose vocabulary is smaller than the reasoning vector's combines
// fewer embedding rows, so it cannot share the reasoning vector's read pass:
// it is built in a pass of its own, as it would be by `rvec merge` alone.
TEST(Sweep, AControlThatCombinesOtherRowsIsBuiltInAPassOfItsOwn) {
  TempDir dir;
  test::write_chat_model(dir / "pre", 1, 304);
  test::write_chat_model(dir / "post", 2, 304);
  test::write_chat_model(dir / "target", 3, 304);
  test::write_chat_model(dir / "control", 4);
  std::ofstream(dir / "ja.jsonl") << R"({"id": "a", "problem": "1+1は？", "answer": "2"})" << "\n";
  const auto p = [&](const char* name) { return (dir / name).string(); };
  std::ofstream(dir / "sweep.yaml") << "pre: " << p("pre") << "\npost: " << p("post") << "\ntarget: " << p("target")
                                    << "\noutput: " << p("out") << "\nweights: [0, 1]\ninclude_post: false\n"
                                    << "controls:\n  - {name: control, post: " << p("control") << "}\n"
                                    << "ablations:\n  - {name: mlp, keep: [mlp]}\n"
                                    << "benchmarks:\n  - name: ja\n    data: " << p("ja.jsonl")
                                    << "\n    samples: 1\n    max_tokens: 4\n";
  const auto run = test::run_rvec("sweep " + p("sweep.yaml"));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const auto merge = test::run_rvec("merge --pre " + p("pre") + " --post " + p("control") + " --target " +
                                    p("target") + " -w 1 -q -o " + p("merged"));
  ASSERT_EQ(merge.exit_code, 0) << merge.output;
  EXPECT_TRUE(test::read_file(dir / "merged" / "model.safetensors") ==
              test::read_file(dir / "out" / "models" / "control" / "w1" / "model.safetensors"));
}

TEST(Sweep, RecipeNumbersAreDecimalAndFinite) {
  TempDir dir;
  const std::string head = "pre: a\npost: b\ntarget: c\noutput: d\nweights: [0, 1]\n";
  std::ofstream(dir / "ok.yaml") << head << "benchmarks: [{data: x.jsonl, samples: 010}]\n";
  EXPECT_EQ(read_sweep_recipe((dir / "ok.yaml").string()).benchmarks[0].samples, 10);  // not octal 8
  const auto refusal = [&](const std::string& benchmark) {
    std::ofstream(dir / "bad.yaml") << head << "benchmarks: [{data: x.jsonl, " << benchmark << "}]\n";
    try {
      read_sweep_recipe((dir / "bad.yaml").string());
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const std::string where = (dir / "bad.yaml").string() + ":6: field ";
  EXPECT_EQ(refusal("samples: 0x10"), where + "\"samples\" must be a positive integer");
  EXPECT_EQ(refusal("samples: 4294967297"), where + "\"samples\" must be a positive integer");
  EXPECT_EQ(refusal("temperature: .inf"), where + "\"temperature\" must be a number");
}

}  // namespace
}  // namespace rvec
