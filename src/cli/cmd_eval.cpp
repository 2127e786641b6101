// rvec eval / grade / report: benchmark runs against any OpenAI-compatible server.
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "base/error.hpp"
#include "base/json.hpp"
#include "base/regular_file.hpp"
#include "cli/commands.hpp"
#include "eval/record.hpp"
#include "eval/report.hpp"
#include "eval/report_html.hpp"
#include "eval/runner.hpp"
#include "study/sweep.hpp"

namespace rvec::cli {
namespace {

using nlohmann::json;

GradeMode mode_from(const std::string& name) {
  const auto mode = parse_grade_mode(name);
  if (!mode) fail(ErrorKind::kUsage, "--mode must be strict, lenient or substring (got \"{}\")", name);
  return *mode;
}

// ---- eval --------------------------------------------------------------------------

struct EvalCli {
  EvalOptions options;
  std::string choices, prompt, stop;
  std::string mode = "strict";
  std::string score = "generate";
  double w = std::numeric_limits<double>::quiet_NaN();
  bool json = false;
};

void run_eval_cli(EvalCli& c) {
  EvalOptions& o = c.options;
  o.mode = mode_from(c.mode);
  o.score = c.score == "generate" ? "" : c.score;
  if (!c.choices.empty()) {
    size_t at = 0;
    while (at <= c.choices.size()) {
      const auto comma = c.choices.find(',', at);
      o.fields.choices.push_back(c.choices.substr(at, comma == std::string::npos ? std::string::npos : comma - at));
      if (comma == std::string::npos) break;
      at = comma + 1;
    }
  }
  o.prompt_template = !c.prompt.empty() && c.prompt[0] == '@' ? read_small_file(c.prompt.substr(1), 1 << 20) : c.prompt;
  if (!c.stop.empty()) o.client.stop.push_back(c.stop);
  if (!std::isnan(c.w)) o.w = c.w;
  if (!o.vector.empty() && !o.w) fail(ErrorKind::kUsage, "--vector {} needs --w (the weight of that vector)", o.vector);
  if (o.label.empty()) {
    const std::string prefix = o.vector.empty() ? "" : o.vector + " ";
    o.label = o.w ? fmt::format("{}w={:g}", prefix, *o.w) : o.client.model;
  }
  o.progress = !c.json;
  const auto s = run_eval(o);
  if (c.json) {
    fmt::print("{}\n", json{{"output", o.output}, {"samples", s.total}, {"reused", s.reused}, {"requested", s.requested},
                            {"failed", s.failed}, {"correct_in_this_run", s.correct}}
                           .dump());
    return;
  }
  fmt::print("{}: {} samples ({} already recorded, {} requested now, {} failed); {} of {} graded now are correct ({})\n",
             o.output, s.total, s.reused, s.requested, s.failed, s.correct, s.graded, c.mode);
  fmt::print("next: rvec report {}\n", o.output);
}

// ---- grade -------------------------------------------------------------------------

struct GradeCli {
  std::string input, output, mode = "strict", kind;
  bool json = false;
};

std::optional<TaskKind> kind_from(const std::string& name) {
  if (name.empty()) return std::nullopt;
  if (name == "integer") return TaskKind::kInteger;
  if (name == "choice") return TaskKind::kChoice;
  fail(ErrorKind::kUsage, "--kind must be integer or choice (got \"{}\")", name);
}

void run_grade_cli(const GradeCli& c) {
  const GradeMode mode = mode_from(c.mode);
  const std::optional<TaskKind> kind = kind_from(c.kind);
  auto rows = read_results_file(c.input);
  if (rows.empty()) bad_input("no records in {}", c.input);
  std::string out_text;
  std::map<std::string, size_t> verdicts, rules;
  size_t changed = 0;
  for (auto& [record, where] : rows) {
    if (kind) record.kind = *kind;
    const std::optional<Verdict> before = record.verdict;
    record.regrade(mode);
    if (before && *before != *record.verdict) ++changed;
    ++verdicts[verdict_name(*record.verdict)];
    ++rules[record.rule];
    out_text += record.to_json().dump() + "\n";
  }
  if (!c.output.empty()) write_file_atomically(c.output, out_text);
  const size_t records = rows.size();
  const double accuracy = static_cast<double>(verdicts["correct"]) / static_cast<double>(records);
  if (c.json) {
    fmt::print("{}\n", json{{"records", records}, {"mode", c.mode}, {"accuracy", accuracy}, {"verdicts", verdicts},
                            {"rules", rules}, {"changed", changed}}
                           .dump());
    return;
  }
  fmt::print("{} records graded {}: accuracy {:.4f}; correct {}, wrong {}, no answer {}, failed requests {}\n", records,
             c.mode, accuracy, verdicts["correct"], verdicts["wrong"], verdicts["no_answer"], verdicts["error"]);
  fmt::print("rules fired: ");
  for (const auto& [rule, n] : rules) fmt::print("{} {}  ", rule, n);
  fmt::print("\nverdicts changed from the recorded ones: {}\n", changed);
  if (!c.output.empty()) fmt::print("wrote {}\n", c.output);
}

// ---- report ------------------------------------------------------------------------

struct ReportCli {
  ReportOptions options;
  std::string mode = "strict", json_path, plot, html;
  bool json = false;
};

void run_report_cli(ReportCli& c) {
  c.options.mode = mode_from(c.mode);
  if (c.options.dev_fraction < 0 || c.options.dev_fraction >= 1) {
    fail(ErrorKind::kUsage, "--dev-fraction must be in [0, 1)");
  }
  const std::vector<Report> reports = build_reports(c.options);
  const json j = reports_json(reports);
  if (!c.json_path.empty()) write_file_atomically(c.json_path, j.dump(2) + "\n");
  std::vector<std::string> plots;
  for (const auto& report : reports) {
    if (c.plot.empty()) break;
    plots.push_back(reports.size() == 1 ? c.plot : path_for_benchmark(c.plot, report.benchmark));
    write_report_plot(report, plots.back());
  }
  if (!c.html.empty()) write_file_atomically(c.html, report_html(reports));
  if (c.json) {
    fmt::print("{}\n", j.dump());
    return;
  }
  fmt::print("{}", format_reports(reports));
  if (!c.json_path.empty()) fmt::print("numbers: {}\n", c.json_path);
  if (!plots.empty()) fmt::print("plot: {}\n", fmt::join(plots, ", "));
  if (!c.html.empty()) fmt::print("answers and tables: {}\n", c.html);
}

// ---- sweep -------------------------------------------------------------------------

struct SweepCli {
  std::string recipe;
  bool dry_run = false;
};

SweepOptions sweep_options(bool dry_run) {
  SweepOptions o;
  o.dry_run = dry_run;
  std::error_code ec;
  o.rvec_binary = std::filesystem::read_symlink("/proc/self/exe", ec).string();
  if (ec) o.rvec_binary = "rvec";
  return o;
}

void run_sweep_cli(const SweepCli& c) { run_sweep(read_sweep_recipe(c.recipe), sweep_options(c.dry_run)); }

struct DemoCli {
  std::string recipe = "demo/sweep.yaml", output;
  int samples = 0;
  bool dry_run = false;
};

void run_demo_cli(const DemoCli& c) {
  if (!std::filesystem::exists(c.recipe)) {
    fail(ErrorKind::kUsage, "{} not found: run rvec demo from the repository root (or pass --recipe)", c.recipe);
  }
  SweepRecipe recipe = read_sweep_recipe(c.recipe);
  if (!std::filesystem::exists(recipe.target)) {
    fail(ErrorKind::kUsage,
         "{}: the mini family is missing (it ships in demo/family; docs/demo.md says how rvec_train_demo remakes "
         "it)",
         recipe.target);
  }
  if (!c.output.empty()) recipe.output = c.output;
  if (c.samples > 0) {
    for (auto& b : recipe.benchmarks) b.samples = c.samples;
  }
  run_sweep(recipe, sweep_options(c.dry_run));
}

}  // namespace

void add_eval_commands(CLI::App& app, int& exit_code) {
  auto dm = std::make_shared<DemoCli>();
  auto* d = app.add_subcommand("demo", "Run the whole study on the bundled mini family (demo/): a few minutes on 2 cores");
  d->add_option("--recipe", dm->recipe, "The demo's sweep recipe")->capture_default_str();
  d->add_option("-o,--output", dm->output, "Where models, results and reports go (default: the recipe's)");
  d->add_option("-k,--samples,--seeds", dm->samples,
                "Samples per problem, each with its own seed (default: the recipe's 4); more samples, tighter CIs");
  d->add_flag("--dry-run", dm->dry_run, "Print the plan only");
  d->footer(
      "Builds target + w*(post - pre) and target + w*(control - pre) for w in 0.25..1.5, serves every model\n"
      "with the built-in engine, evaluates 200 Japanese problems, and prints accuracy with 95% CIs, the paired\n"
      "gain over the target, the step-by-step rate, the Japanese share, the w chosen on dev for each vector and\n"
      "its held-out score, the target-style rate (the target's polite です。), and writes an HTML page with\n"
      "every response side by side.\n"
      "What the family is, how it was trained and what it shows: docs/demo.md.");
  d->callback([dm, &exit_code] {
    run_demo_cli(*dm);
    exit_code = 0;
  });

  auto sw = std::make_shared<SweepCli>();
  auto* s = app.add_subcommand("sweep", "The whole study: build every w, serve each model, evaluate, report (resumable)");
  s->add_option("recipe", sw->recipe, "Sweep recipe (YAML; see docs/sweep.md)")->required();
  s->add_flag("--dry-run", sw->dry_run, "Print the plan with disk, request and time estimates; do nothing");
  s->footer(
      "Example: rvec sweep demo/sweep.yaml\n"
      "Models are built once (one read pass for all w), each is served (built-in rvec serve, or serve.command\n"
      "such as 'vllm serve {model} --port {port}'), evaluated, and stopped, also on errors and Ctrl-C.\n"
      "Re-running the same recipe reuses finished models and recorded samples.");
  s->callback([sw, &exit_code] {
    run_sweep_cli(*sw);
    exit_code = 0;
  });

  auto ev = std::make_shared<EvalCli>();
  auto* e = app.add_subcommand("eval", "Run a benchmark against an OpenAI-compatible server, k samples per problem, resumable");
  EvalOptions& o = ev->options;
  e->add_option("--endpoint", o.client.endpoint, "Server URL, e.g. http://127.0.0.1:8000")->required();
  e->add_option("--model", o.client.model, "Model name the server knows")->required();
  e->add_option("--data", o.data, "Benchmark file: .jsonl, .json, .csv or .tsv")->required();
  e->add_option("-o,--output", o.output, "Results JSONL (appended to; re-running resumes)")->required();
  e->add_option("--question-field", o.fields.question, "Question field (default: problem, else question)");
  e->add_option("--answer-field", o.fields.answer, "Answer field")->capture_default_str();
  e->add_option("--id-field", o.fields.id, "Id field (default: the line number when absent)")->capture_default_str();
  e->add_option("--choices", ev->choices, "Multiple choice: option fields, comma separated (e.g. A,B,C,D), or one field that holds a list of options");
  e->add_option("-k,--samples", o.samples, "Samples per problem")->capture_default_str();
  e->add_option("--temperature", o.client.temperature, "Sent explicitly")->capture_default_str();
  e->add_option("--top-p", o.client.top_p, "Sent explicitly")->capture_default_str();
  e->add_option("--max-tokens", o.client.max_tokens, "Sent explicitly")->capture_default_str();
  e->add_option("--seed", o.seed, "Run seed: sample j of a problem gets the same seed for every model")->capture_default_str();
  e->add_option("--stop", ev->stop, "A stop string");
  e->add_option("--prompt", ev->prompt, "Prompt template with {question}, or @FILE (default: Japanese, answer in \\boxed{})");
  e->add_option("--system", o.system_prompt, "System prompt");
  e->add_option("--label", o.label, "Name of this run in reports (default: w=W, else the model)");
  e->add_option("--benchmark", o.benchmark,
                "Name of the data set in reports (default: the data file's name without extension)");
  e->add_option("--w", ev->w, "The merge weight of this model (x axis of report plots)");
  e->add_option("--vector", o.vector,
                "The vector --w scales, when it is not the reasoning vector (e.g. control): reports plot and "
                "choose w per vector");
  e->add_option("--concurrency", o.concurrency, "Requests in flight")->capture_default_str();
  e->add_option("--timeout", o.client.timeout_s, "Seconds per request (long reasoning needs many)")->capture_default_str();
  e->add_option("--retries", o.client.retries, "Retries on 429/5xx/connection errors")->capture_default_str();
  e->add_option("--retry-base-ms", o.client.retry_base_ms, "First backoff; doubles per retry")->capture_default_str();
  e->add_option("--mode", ev->mode, "Live grading mode: strict, lenient or substring")->capture_default_str();
  e->add_option("--score", ev->score,
                "generate (the model writes an answer), or for --choices: logprob (the option with the highest "
                "log-likelihood after the prompt, via /v1/completions echo + logprobs) or logprob_per_byte (per UTF-8 "
                "byte of the option, lm-eval-harness's acc_norm)")
      ->capture_default_str();
  e->add_flag("--json", ev->json, "Print a JSON summary (no progress bar)");
  e->footer(
      "Example:\n"
      "  rvec eval --endpoint http://127.0.0.1:8000 --model w0.5 --data aime24-ja.jsonl -k 16 \\\n"
      "            --temperature 0.6 --top-p 0.95 --max-tokens 16384 --w 0.5 -o results/w0.5.jsonl\n"
      "Each sample is appended as it completes; re-run the same command to resume after a crash or Ctrl-C.\n"
      "429/5xx and connection errors are retried with backoff; a 400 is recorded as that item's failure;\n"
      "a run in which most requests fail stops with an error instead of reporting a score.");
  e->callback([ev, &exit_code] {
    run_eval_cli(*ev);
    exit_code = 0;
  });

  auto gr = std::make_shared<GradeCli>();
  auto* g = app.add_subcommand("grade", "Regrade results (or any JSONL of {id, response, answer}) without calling a model");
  g->add_option("input", gr->input, "JSONL records")->required();
  g->add_option("-o,--output", gr->output, "Write the regraded records here");
  g->add_option("--mode", gr->mode, "strict, lenient or substring")->capture_default_str();
  g->add_option("--kind", gr->kind, "integer or choice (default: the record's kind, else integer)");
  g->add_flag("--json", gr->json, "Print the summary as JSON");
  g->footer("Rules: docs/evaluation.md. Example: rvec grade vllm-outputs.jsonl --mode lenient -o regraded.jsonl");
  g->callback([gr, &exit_code] {
    run_grade_cli(*gr);
    exit_code = 0;
  });

  auto rp = std::make_shared<ReportCli>();
  auto* r = app.add_subcommand("report", "Accuracy with CIs, paired gains, Japanese share, held-out w: a table, JSON and a plot");
  r->add_option("inputs", rp->options.inputs, "Results JSONL files (e.g. one per w)")->required();
  r->add_option("--mode", rp->mode, "Grading mode for the report")->capture_default_str();
  r->add_option("--baseline", rp->options.baseline, "Label to compare against (default: the w = 0 run)");
  r->add_option("--dev-fraction", rp->options.dev_fraction, "Choose w on this fraction of problems, report on the rest");
  r->add_option("--split-seed", rp->options.split_seed, "Seed of the dev/test split")->capture_default_str();
  r->add_option("--json-out", rp->json_path, "Write every number to this JSON file");
  r->add_option("--step-pattern", rp->options.step_pattern, "Regex marking a step-by-step answer (adds a steps column)");
  r->add_option("--style-pattern", rp->options.style_pattern,
                "Regex marking the target's own style, e.g. 'です。' (adds a style column beside ja)");
  r->add_option("--plot", rp->plot,
                "Write the plot (SVG; a PNG beside it when rsvg-convert is installed); for results of several "
                "benchmarks one plot each: report.svg gives report-<benchmark>.svg");
  r->add_option("--html", rp->html,
                "Write one self-contained HTML page: the tables, the plot, and every response side by side per problem");
  r->add_flag("--json", rp->json, "Print the JSON instead of the table");
  r->footer(
      "Example: rvec report results/*.jsonl --dev-fraction 0.5 --plot report.svg --json-out report.json --html report.html\n"
      "Records of several benchmarks get one table each and a summary (one row per label, one column per benchmark).\n"
      "Results written with `rvec eval --w W --vector NAME` (a control vector) form their own series: their own\n"
      "rows, their own held-out choice of w and a dashed curve; the baseline stays the reasoning vector's w = 0.");
  r->callback([rp, &exit_code] {
    run_report_cli(*rp);
    exit_code = 0;
  });
}

}  // namespace rvec::cli
