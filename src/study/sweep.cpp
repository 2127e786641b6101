#include "study/sweep.hpp"

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <set>

#include "base/error.hpp"
#include "base/json.hpp"
#include "base/regular_file.hpp"
#include "base/text.hpp"
#include "base/thread_pool.hpp"
#include "base/yaml_reader.hpp"
#include "eval/report.hpp"
#include "eval/report_html.hpp"
#include "eval/runner.hpp"
#include "io/staging.hpp"
#include "merge/job.hpp"
#include "merge/method.hpp"
#include "merge/rules.hpp"
#include "hf/model_folder.hpp"
#include "serve/managed_server.hpp"
#include "text/unicode.hpp"

namespace rvec {
namespace {

namespace fs = std::filesystem;

// ---- the recipe --------------------------------------------------------------------

// A control's name becomes a folder under models/ beside w0.5, w1, ...: a
// letter, then letters, digits, '-' or '_', and not itself a weight's name.
bool is_control_name(const std::string& name) {
  const auto plain = [](char ch) { return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_'; };
  if (name.empty() || !std::isalpha(static_cast<unsigned char>(name[0])) || !std::ranges::all_of(name, plain)) return false;
  const bool looks_like_weight =
      name[0] == 'w' && name.size() > 1 && name.find_first_not_of("0123456789-", 1) == std::string::npos;
  return !looks_like_weight && name != "target" && name != "post";
}

SweepBenchmark read_benchmark(const YamlReader& y, const YAML::Node& node) {
  y.only(node, {"name", "data", "question_field", "answer_field", "id_field", "choices", "prompt", "system", "samples",
                "temperature", "top_p", "max_tokens", "seed", "dev_fraction", "split_seed", "mode", "step_pattern",
                "style_pattern"},
         "a benchmark");
  SweepBenchmark b;
  y.read(node, "name", b.name, "a string");
  y.read(node, "data", b.data, "a path");
  y.read(node, "question_field", b.fields.question, "a string");
  y.read(node, "answer_field", b.fields.answer, "a string");
  y.read(node, "id_field", b.fields.id, "a string");
  if (const auto choices = node["choices"]) {
    if (!choices.IsSequence()) y.error(choices, "field \"choices\" must be a list of field names");
    for (const auto& c : choices) b.fields.choices.push_back(c.as<std::string>());
  }
  y.read(node, "prompt", b.prompt, "a string with {question}");
  y.read(node, "system", b.system, "a string");
  y.read(node, "samples", b.samples, "a positive integer");
  y.read(node, "temperature", b.temperature, "a number");
  y.read(node, "top_p", b.top_p, "a number");
  y.read(node, "max_tokens", b.max_tokens, "a positive integer");
  y.read(node, "seed", b.seed, "an integer");
  y.read(node, "dev_fraction", b.dev_fraction, "a number in [0, 1)");
  y.read(node, "split_seed", b.split_seed, "an integer");
  y.read(node, "step_pattern", b.step_pattern, "a regex");
  y.read(node, "style_pattern", b.style_pattern, "a regex");
  std::string mode = "strict";
  y.read(node, "mode", mode, "strict, lenient or substring");
  const auto parsed = parse_grade_mode(mode);
  if (!parsed) y.error(node["mode"], "field \"mode\" must be strict, lenient or substring");
  b.mode = *parsed;
  if (b.data.empty()) y.error(node, "a benchmark needs \"data\"");
  if (b.name.empty()) b.name = fs::path(b.data).stem().string();
  if (b.samples < 1) y.error(node["samples"], "field \"samples\" must be at least 1");
  return b;
}

// ---- the plan ------------------------------------------------------------------------

struct SweepModel {
  std::string name;           // served model name, results file name
  std::string label;          // report label
  std::optional<double> w;    // plotted against w when set
  std::string vector;         // "" for the reasoning vector, else the control's name
  fs::path path;
  bool built = false;         // made by this sweep (else an input)
};

std::string weight_name(double w) { return weight_folder_name(w); }

// models/w0.5 for the reasoning vector, models/<control>/w0.5 for a control
// (as GGUF: models/w0.5.gguf, models/<control>/w0.5.gguf, the names the merge
// gives each weight's file).
fs::path model_folder(const SweepRecipe& r, const std::string& vector, double w) {
  const fs::path models = fs::path(r.output) / "models";
  const std::string name = weight_name(w) + (r.format == OutputFormat::kGguf ? ".gguf" : "");
  return vector.empty() ? models / name : models / vector / name;
}

std::vector<SweepModel> plan_models(const SweepRecipe& r) {
  std::vector<SweepModel> models;
  for (const double w : r.weights) {
    if (w == 0) {
      models.push_back({"target", "w=0", 0.0, "", r.target, false});
    } else {
      models.push_back({weight_name(w), fmt::format("w={:g}", w), w, "", model_folder(r, "", w), true});
    }
  }
  if (r.include_post) models.push_back({"post", "post", std::nullopt, "", r.post, false});
  for (const auto& c : r.series) {
    for (const double w : c.weights) {
      models.push_back({fmt::format("{}-{}", c.name, weight_name(w)), fmt::format("{} w={:g}", c.name, w), w, c.name,
                        model_folder(r, c.name, w), true});
    }
  }
  return models;
}

// One series' merge job: every w of the series.
struct SeriesJob {
  JobInputs inputs;
  JobSpec spec;
  JobPlan plan;
};

std::unique_ptr<SeriesJob> plan_series(const SweepRecipe& r, const SweepSeries& series,
                                       const std::vector<std::pair<double, fs::path>>& outputs, OpenFolders& models) {
  auto job = std::make_unique<SeriesJob>();
  JobSpec& spec = job->spec;
  for (const auto& [w, path] : outputs) spec.weights.push_back(w);
  if (!series.method.empty()) spec.method = &merge_method(series.method);
  spec.method_params = series.params;
  if (!series.parts.empty()) spec.rules = part_rules(series.parts, series.keep_parts);
  spec.command_line = "rvec sweep";
  spec.replace_hint = "delete it to rebuild it with this recipe";
  spec.format = r.format;
  spec.gguf_type = r.gguf_type;
  // Several weights land in output/w<w>/; one weight is written to its own folder.
  spec.output = outputs.size() == 1 ? outputs[0].second : outputs[0].second.parent_path();
  const ModelFolder* pre = models.get(r.pre);
  job->inputs = JobInputs{{{pre, models.get(series.post)}}, models.get(r.target)};
  if (series.match_norms) {
    // The reasoning vector sets the norms (weight 0); the control gives the direction.
    job->inputs.vectors.insert(job->inputs.vectors.begin(), VectorInput{pre, models.get(r.post)});
    spec.method = &merge_method("norm_matched");
    spec.vector_params = {{{"weight", ParamSetting(0.0)}}, {{"weight", ParamSetting(1.0)}}};
  }
  job->plan = plan_job(job->inputs, spec);
  return job;
}

// A GGUF file carries no job fingerprint to recognise a finished output by;
// the merge writes it atomically, so one that exists is complete and is left
// out of the build. One whose partial folder is still there was put in place
// by a build that was stopped before its other outputs were: the build takes
// it up again (and keeps it when that folder's marker names the same job).
void skip_existing_gguf(const SweepRecipe& r, std::vector<std::pair<double, fs::path>>& outputs) {
  if (r.format != OutputFormat::kGguf) return;
  std::erase_if(outputs, [](const auto& output) {
    const bool done = fs::exists(output.second) && !fs::exists(staging_path_for(output.second));
    if (done) fmt::print("  reused {} (GGUF: not re-checked against the recipe; delete it to rebuild)\n", output.second.string());
    return done;
  });
}

// Every merged model of the sweep in one read pass: the reasoning vector's
// weights and every control, variant and ablation (a control that combines
// other rows, from another vocabulary, in a pass of its own).
void build_models(const SweepRecipe& r) {
  OpenFolders models;
  std::vector<std::unique_ptr<SeriesJob>> jobs;
  const auto add = [&](const SweepSeries& series, std::vector<std::pair<double, fs::path>> outputs) {
    skip_existing_gguf(r, outputs);
    if (!outputs.empty()) jobs.push_back(plan_series(r, series, outputs, models));
  };
  std::vector<std::pair<double, fs::path>> merged;
  for (const double w : r.weights) {
    if (w != 0) merged.emplace_back(w, model_folder(r, "", w));
  }
  add(SweepSeries{.post = r.post}, merged);
  for (const auto& c : r.series) {
    std::vector<std::pair<double, fs::path>> outputs;
    for (const double w : c.weights) outputs.emplace_back(w, model_folder(r, c.name, w));
    add(c, outputs);
  }
  if (jobs.empty()) return;
  std::vector<SharedJob> shared;
  for (const auto& job : jobs) shared.push_back({&job->inputs, &job->spec, &job->plan});
  for (const auto& pass : shared_passes(shared)) {
    for (const auto& result : run_jobs(pass)) {
      for (const auto& o : result.outputs) {
        fmt::print("  {} {}\n", o.already_complete ? "reused" : "built ", o.path.string());
      }
    }
  }
}

size_t count_lines(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return 0;
  LineReader in(path.string());
  size_t n = 0;
  for (std::string line; in.next(line);) n += !line.empty();
  return n;
}

std::string serve_command(const SweepRecipe& r, const SweepOptions& o, const SweepModel& m, int port, int worker) {
  if (r.serve_commands.empty()) {
    return fmt::format("exec {} serve {} --port {} --served-model-name {}", shell_quote(o.rvec_binary),
                       shell_quote(m.path.string()), port, shell_quote(m.name));
  }
  std::string cmd = r.serve_commands[static_cast<size_t>(worker) % r.serve_commands.size()];
  const auto substitute = [&](const std::string& key, const std::string& value) {
    for (auto at = cmd.find(key); at != std::string::npos; at = cmd.find(key, at + value.size())) {
      cmd.replace(at, key.size(), value);
    }
  };
  substitute("{model}", shell_quote(m.path.string()));
  substitute("{port}", std::to_string(port));
  substitute("{name}", shell_quote(m.name));
  substitute("{worker}", std::to_string(worker));
  return cmd;
}

fs::path results_path(const SweepRecipe& r, const SweepBenchmark& b, const SweepModel& m) {
  return fs::path(r.output) / "results" / b.name / (m.name + ".jsonl");
}

// What a server wrote to its log after byte `from`.
std::string log_since(const fs::path& log, uintmax_t from) {
  std::ifstream in(log, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(from));
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Whether the model's server is told its name (the built-in server, or a
// template with {name}), so that its /v1/models must list that name.
bool told_its_name(const SweepRecipe& r, int worker) {
  return r.serve_commands.empty() ||
         r.serve_commands[static_cast<size_t>(worker) % r.serve_commands.size()].find("{name}") != std::string::npos;
}

// The ids the server at `url` lists under /v1/models; empty when it answers
// no such list.
std::vector<std::string> listed_models(const std::string& url) {
  const HttpAnswer answer = http_get(url + "/v1/models");
  std::vector<std::string> ids;
  if (answer.status != 200) return ids;
  const auto list = nlohmann::json::parse(answer.body, nullptr, false);
  if (!list.is_object() || !list.contains("data") || !list["data"].is_array()) return ids;
  for (const auto& model : list["data"]) {
    if (model.is_object() && model.contains("id") && model["id"].is_string()) ids.push_back(model["id"].get<std::string>());
  }
  return ids;
}

// Empty if the server answering at `url` lists `m`'s name; else what it
// lists instead (another server holds the port): its first three ids, each
// cut to 100 bytes, made valid UTF-8 and kept on one line.
std::string someone_elses_models(const std::string& url, const SweepModel& m) {
  constexpr size_t kShown = 3;
  const auto ids = listed_models(url);
  if (std::find(ids.begin(), ids.end(), m.name) != ids.end()) return {};
  if (ids.empty()) return "no models";
  std::vector<std::string> shown;
  for (size_t i = 0; i < std::min(ids.size(), kShown); ++i) {
    shown.push_back(fmt::format("`{}`", printable(replace_invalid_utf8(std::string_view(ids[i]).substr(0, 100)))));
  }
  const std::string more = ids.size() > kShown ? fmt::format(" and {} more", ids.size() - kShown) : "";
  return fmt::format("{}{}", fmt::join(shown, ", "), more);
}

// Starts the model's server and waits until it answers at `url`. A free port
// picked here can be taken by another process before the server binds it
// (parallel sweeps, tests); then the server says it cannot listen, or (when
// it is told the model's name) another server answers there under another
// name, and up to two more ports are tried. A port the recipe fixes is tried
// once.
std::unique_ptr<ManagedServer> start_server(const SweepRecipe& r, const SweepOptions& o, const SweepModel& m, int worker,
                                            std::string& url) {
  const auto log = fs::path(r.output) / "logs" / (m.name + ".log");
  fs::create_directories(log.parent_path());
  for (int attempt = 1;; ++attempt) {
    const bool last_try = r.port || attempt == 3;
    const int port = r.port ? r.port : free_local_port();
    url = fmt::format("http://127.0.0.1:{}", port);
    fmt::print("  {}: serving {} at {}\n", m.label, m.path.string(), url);
    std::fflush(stdout);
    std::error_code ec;
    const uintmax_t log_size = fs::exists(log, ec) ? fs::file_size(log, ec) : 0;
    auto server = std::make_unique<ManagedServer>(serve_command(r, o, m, port, worker), log.string());
    try {
      server->wait_ready(url, r.startup_timeout_s);
    } catch (const Error&) {
      if (last_try || log_since(log, log_size).find("cannot listen on") == std::string::npos) throw;
      fmt::print("  {}: port {} was taken before the server could listen on it; trying another port\n", m.label, port);
      continue;
    }
    if (!told_its_name(r, worker)) return server;
    const std::string listed = someone_elses_models(url, m);
    if (listed.empty()) return server;
    server->stop();
    const std::string impostor = fmt::format("the server answering at {} is not {}'s: its /v1/models lists {} instead of `{}`",
                                             url, m.label, listed, m.name);
    if (last_try) fail(ErrorKind::kIo, "{}", impostor);
    fmt::print("  {}: {}; trying another port\n", m.label, impostor);
  }
}

void evaluate(const SweepRecipe& r, const SweepOptions& o, const SweepModel& m,
              const std::vector<std::pair<SweepBenchmark, size_t>>& benchmarks, int worker) {
  bool complete = true;
  for (const auto& [b, problems] : benchmarks) {
    complete = complete && count_lines(results_path(r, b, m)) >= problems * static_cast<size_t>(b.samples);
  }
  if (complete) {
    fmt::print("  {}: every sample already recorded\n", m.label);
    return;
  }
  std::string url;
  const auto server = start_server(r, o, m, worker, url);
  for (const auto& [b, problems] : benchmarks) {
    EvalOptions e;
    e.data = b.data;
    e.fields = b.fields;
    e.client.endpoint = url;
    e.client.model = m.name;
    e.client.temperature = b.temperature;
    e.client.top_p = b.top_p;
    e.client.max_tokens = b.max_tokens;
    e.client.timeout_s = r.request_timeout_s;
    e.prompt_template = b.prompt;
    e.system_prompt = b.system;
    e.label = m.label;
    e.benchmark = b.name;
    e.w = m.w;
    e.vector = m.vector;
    e.samples = b.samples;
    e.seed = b.seed;
    e.concurrency = r.concurrency;
    e.mode = b.mode;
    e.output = results_path(r, b, m).string();
    e.progress = r.workers == 1;  // one progress bar per line, not several fighting over it
    fs::create_directories(fs::path(e.output).parent_path());
    const auto s = run_eval(e);
    fmt::print("  {} / {}: {} samples ({} reused, {} requested, {} correct now)\n", m.label, b.name, s.total,
               s.reused, s.requested, s.correct);
  }
  server->stop();
}

// Each worker takes the next model not yet taken. After a failure no worker
// starts another model; the first error is rethrown once all have stopped.
void evaluate_all(const SweepRecipe& r, const SweepOptions& o, const std::vector<SweepModel>& models,
                  const std::vector<std::pair<SweepBenchmark, size_t>>& benchmarks) {
  ThreadPool pool(static_cast<size_t>(r.workers));
  pool.parallel_for_workers(models.size(), [&](size_t worker, size_t i) {
    evaluate(r, o, models[i], benchmarks, static_cast<int>(worker));
  });
}

// report-<benchmark>.txt, .json, .svg and .html for each benchmark; for
// several, report-summary.txt and report.html over all of them.
void write_reports(const SweepRecipe& r, const std::vector<SweepModel>& models) {
  std::vector<Report> reports;
  for (const auto& b : r.benchmarks) {
    ReportOptions o;
    for (const auto& m : models) {
      if (fs::exists(results_path(r, b, m))) o.inputs.push_back(results_path(r, b, m).string());
    }
    if (o.inputs.empty()) continue;
    o.mode = b.mode;
    o.dev_fraction = b.dev_fraction;
    o.split_seed = b.split_seed;
    o.step_pattern = b.step_pattern;
    o.style_pattern = b.style_pattern;
    reports.push_back(build_report(o));
    const Report& report = reports.back();
    const std::string base = (fs::path(r.output) / fmt::format("report-{}", b.name)).string();
    const std::string text = format_report(report);
    write_file_atomically(base + ".txt", text);
    write_file_atomically(base + ".json", report_json(report).dump(2) + "\n");
    write_report_plot(report, base + ".svg");
    write_file_atomically(base + ".html", report_html(std::span(&report, 1)));
    fmt::print("\n== {} ==\n{}report: {}.txt, {}.json, plot: {}.svg, answers: {}.html\n", b.name, text, base, base, base,
               base);
  }
  if (reports.size() < 2) return;
  const std::string summary = format_summary(reports);
  const fs::path base = fs::path(r.output) / "report";
  write_file_atomically((fs::path(r.output) / "report-summary.txt").string(), summary);
  write_file_atomically(base.string() + ".html", report_html(reports));
  fmt::print("\n{}summary: {}, every benchmark's answers: {}.html\n", summary,
             (fs::path(r.output) / "report-summary.txt").string(), base.string());
}

// What one merged model takes on disk, as the merge itself plans it (a GGUF
// file of the recipe's type, or the safetensors files with their headers).
uint64_t planned_model_bytes(const SweepRecipe& r, OpenFolders& models) {
  const auto w = std::ranges::find_if(r.weights, [](double x) { return x != 0; });
  const double weight = w == r.weights.end() ? 1.0 : *w;
  return plan_series(r, SweepSeries{.post = r.post}, {{weight, model_folder(r, "", weight)}}, models)->plan.bytes_per_output;
}

void print_plan(const SweepRecipe& r, const std::vector<SweepModel>& models,
                const std::vector<std::pair<SweepBenchmark, size_t>>& benchmarks) {
  OpenFolders inputs;
  const uint64_t model_bytes = planned_model_bytes(r, inputs);
  const uint64_t input_bytes = inputs.get(r.target)->tensor_bytes();
  size_t to_build = 0, requests = 0;
  uint64_t tokens = 0;
  fmt::print("sweep plan ({})\n", r.origin);
  for (const auto& m : models) {
    const bool exists = fs::exists(m.path);
    if (m.built && !exists) ++to_build;
    size_t model_requests = 0;
    for (const auto& [b, problems] : benchmarks) {
      const size_t want = problems * static_cast<size_t>(b.samples);
      const size_t have = std::min(want, count_lines(results_path(r, b, m)));
      model_requests += want - have;
      tokens += static_cast<uint64_t>(want - have) * static_cast<uint64_t>(b.max_tokens);
    }
    requests += model_requests;
    fmt::print("  {:<20} {:<40} {:<10} {} requests to send\n", m.label, m.path.string(),
               m.built ? (exists ? "built" : "to build") : "input", model_requests);
  }
  const uint64_t disk = model_bytes * to_build;
  fmt::print("disk: {} models to build x {} = {} (free at {}: {})\n", to_build, human_bytes(model_bytes),
             human_bytes(disk), r.output, human_bytes(free_bytes_at(fs::path(r.output))));
  for (const auto& [b, problems] : benchmarks) {
    fmt::print("benchmark {}: {} problems x {} samples, max_tokens {}, temperature {}, dev fraction {}\n", b.name,
               problems, b.samples, b.max_tokens, b.temperature, b.dev_fraction);
  }
  const double merge_s = static_cast<double>(disk + input_bytes * 3) / 200e6;
  const double generate_s = static_cast<double>(tokens) / r.tokens_per_second;
  fmt::print("requests: {} to send; at most {} generated tokens\n", requests, tokens);
  fmt::print("time: merging about {:.0f} s at 200 MB/s; generation at most {:.0f} s at {} tok/s "
             "(serve.tokens_per_second: your server's batched rate)\n",
             merge_s, generate_s, r.tokens_per_second);
}

// serve.command (one template), serve.commands (a list: one worker each) and
// serve.workers (how many copies of a single template, or of the built-in server).
void read_serve_commands(const YamlReader& y, const YAML::Node& serve, SweepRecipe& r) {
  if (serve["command"] && serve["commands"]) y.error(serve["commands"], "give serve.command or serve.commands, not both");
  std::string command;
  y.read(serve, "command", command, "a command template with {model} and {port}");
  if (!command.empty()) r.serve_commands.push_back(command);
  if (const auto list = serve["commands"]) {
    if (!list.IsSequence() || list.size() == 0) y.error(list, "field \"commands\" must be a list of command templates");
    for (const auto& item : list) {
      if (!item.IsScalar()) y.error(item, "field \"commands\" must be a list of command templates");
      r.serve_commands.push_back(item.as<std::string>());
    }
    if (serve["workers"]) y.error(serve["workers"], "serve.commands already sets one worker per command; drop \"workers\"");
    r.workers = static_cast<int>(r.serve_commands.size());
  }
  y.read(serve, "workers", r.workers, "a positive integer");
  if (r.workers < 1 || r.workers > 64) y.error(serve["workers"], "field \"workers\" must be between 1 and 64");
}

// The name and weights every control, variant and ablation has; `what` ("a control") names it in messages.
SweepSeries read_series(const YamlReader& y, const YAML::Node& node, const char* what, SweepSeries series) {
  y.read(node, "name", series.name, "a string");
  if (node["weights"]) series.weights = y.numbers(node, "weights");
  if (!is_control_name(series.name)) {
    y.error(node["name"] ? node["name"] : node,
            fmt::format("{}'s name must start with a letter, use only letters, digits, '-' or '_', and not be "
                        "target, post or a weight's name like w1 (it names a folder and the served models)",
                        what));
  }
  if (std::ranges::find(series.weights, 0.0) != series.weights.end()) {
    y.error(node["weights"], fmt::format("{}'s weights must not include 0 (w = 0 is the target, already in "
                                         "\"weights\")",
                                         what));
  }
  return series;
}

// An ablation: the reasoning vector's parts named by `keep` (the rest left
// as in the target) or all but those named by `drop`.
SweepSeries read_ablation(const YamlReader& y, const YAML::Node& node, const std::string& post) {
  y.only(node, {"name", "keep", "drop", "weights"}, "an ablation");
  if (!node["name"]) y.error(node, "an ablation needs \"name\"");
  if (static_cast<bool>(node["keep"]) == static_cast<bool>(node["drop"])) {
    y.error(node, "an ablation needs either \"keep\" or \"drop\": a list of parts of the vector");
  }
  SweepSeries ablation{"", post, {1.0}};
  ablation.keep_parts = static_cast<bool>(node["keep"]);
  const YAML::Node parts = ablation.keep_parts ? node["keep"] : node["drop"];
  const std::string expected = fmt::format("field \"{}\" must be a list of parts of the vector ({})",
                                           ablation.keep_parts ? "keep" : "drop", kVectorParts);
  if (!parts.IsSequence() || parts.size() == 0) y.error(parts, expected);
  for (const auto& part : parts) {
    if (!part.IsScalar()) y.error(part, expected);
    const auto text = part.as<std::string>();
    std::string problem;
    try {
      if (!part_rule(text, 0.0)) problem = fmt::format("unknown part \"{}\" of the vector ({})", text, kVectorParts);
    } catch (const Error& e) {  // a bad layer number
      if (e.kind() != ErrorKind::kUsage) throw;
      problem = e.what();
    }
    if (!problem.empty()) y.error(part, problem);
    ablation.parts.push_back(text);
  }
  return read_series(y, node, "an ablation", std::move(ablation));
}

// format (safetensors or gguf) and, for GGUF, its type. Every type rvec
// writes is one the built-in engine serves (Q4_K_M widened to f32 at load).
void read_output_format(const YamlReader& y, const YAML::Node& root, SweepRecipe& r) {
  std::string format = "safetensors", type;
  y.read(root, "format", format, "safetensors or gguf");
  y.read(root, "type", type, "f32, f16, bf16, q8_0 or q4_k_m");
  if (format != "safetensors" && format != "gguf") y.error(root["format"], "field \"format\" must be safetensors or gguf");
  if (format == "safetensors") {
    if (root["type"]) y.error(root["type"], "field \"type\" is for GGUF models (format: gguf)");
    return;
  }
  r.format = OutputFormat::kGguf;
  if (!root["type"]) y.error(root["format"], "GGUF models need their type: f32, f16, bf16, q8_0 or q4_k_m");
  const auto parsed = parse_gguf_file_type(type);
  if (!parsed) y.error(root["type"], fmt::format("type \"{}\" is not f32, f16, bf16, q8_0 or q4_k_m", type));
  r.gguf_type = *parsed;
}

}  // namespace

SweepRecipe read_sweep_recipe(const std::string& path) {
  const YamlReader y(path);
  const YAML::Node root = y.load(read_small_file(path, 1'000'000));
  y.only(root, {"pre", "post", "target", "weights", "include_post", "controls", "variants", "ablations", "benchmarks",
                "serve", "output", "format", "type"},
         "a sweep recipe");
  SweepRecipe r;
  r.origin = path;
  y.read(root, "pre", r.pre, "a model path");
  y.read(root, "post", r.post, "a model path");
  y.read(root, "target", r.target, "a model path");
  y.read(root, "output", r.output, "a folder");
  y.read(root, "include_post", r.include_post, "true or false");
  r.weights = y.numbers(root, "weights");
  read_output_format(y, root, r);
  if (const auto controls = root["controls"]) {
    if (!controls.IsSequence()) y.error(controls, "field \"controls\" must be a list");
    for (const auto& c : controls) {
      y.only(c, {"name", "post", "weights", "match_norms"}, "a control");
      SweepSeries control{"control", "", {1.0}};
      y.read(c, "post", control.post, "a model path");
      y.read(c, "match_norms", control.match_norms, "true or false");
      if (control.post.empty()) y.error(c, "a control needs \"post\" (the model whose vector is the control)");
      r.series.push_back(read_series(y, c, "a control", std::move(control)));
    }
  }
  if (const auto variants = root["variants"]) {
    if (!variants.IsSequence()) y.error(variants, "field \"variants\" must be a list");
    for (const auto& v : variants) {
      y.only(v, {"name", "method", "params", "weights"}, "a variant");
      SweepSeries variant{"", r.post, {1.0}};
      const auto method = v["method"];
      if (!method) y.error(v, "a variant needs \"method\" (ties, dare_ties, ...)");
      variant.method = y.scalar<std::string>(method, "method", "a merge method's name");
      if (!find_merge_method(variant.method)) {
        y.error(method, fmt::format("unknown merge method \"{}\" (known: {})", variant.method,
                                    fmt::join(merge_method_names(), ", ")));
      }
      if (const auto params = v["params"]) {
        if (!params.IsMap()) y.error(params, "field \"params\" must be a mapping of parameter names to values");
        for (const auto& entry : params) {
          const auto name = entry.first.as<std::string>();
          const MethodParam* param = find_setting_param(merge_method(variant.method), name);
          if (!param) y.error(entry.first, fmt::format("merge method {} takes no parameter \"{}\"", variant.method, name));
          variant.params.emplace(name, read_param_setting(y, entry.second, *param));
        }
      }
      variant.name = variant.method;
      r.series.push_back(read_series(y, v, "a variant", std::move(variant)));
    }
  }
  if (const auto ablations = root["ablations"]) {
    if (!ablations.IsSequence()) y.error(ablations, "field \"ablations\" must be a list");
    for (const auto& a : ablations) r.series.push_back(read_ablation(y, a, r.post));
  }
  if (const auto benchmarks = root["benchmarks"]) {
    if (!benchmarks.IsSequence()) y.error(benchmarks, "field \"benchmarks\" must be a list");
    for (const auto& b : benchmarks) r.benchmarks.push_back(read_benchmark(y, b));
  }
  if (const auto serve = root["serve"]) {
    y.only(serve, {"command", "commands", "workers", "port", "startup_timeout_s", "concurrency", "request_timeout_s",
                   "tokens_per_second"},
           "serve");
    read_serve_commands(y, serve, r);
    y.read(serve, "port", r.port, "a port number");
    y.read(serve, "startup_timeout_s", r.startup_timeout_s, "seconds");
    y.read(serve, "concurrency", r.concurrency, "a positive integer");
    y.read(serve, "request_timeout_s", r.request_timeout_s, "seconds");
    y.read(serve, "tokens_per_second", r.tokens_per_second, "a number");
  }
  for (const auto& [value, field] : {std::pair{&r.pre, "pre"}, std::pair{&r.post, "post"},
                                     std::pair{&r.target, "target"}, std::pair{&r.output, "output"}}) {
    if (value->empty()) bad_input("{}: field \"{}\" is required", path, field);
  }
  if (r.weights.empty()) bad_input("{}: field \"weights\" is required (0 stands for the target itself)", path);
  if (r.benchmarks.empty()) bad_input("{}: field \"benchmarks\" needs at least one benchmark", path);
  std::set<std::string> names;
  for (const auto& b : r.benchmarks) {
    if (!names.insert(b.name).second) bad_input("{}: two benchmarks are named \"{}\"", path, b.name);
  }
  std::set<std::string> series_names;
  for (const auto& c : r.series) {
    if (!series_names.insert(c.name).second) {
      bad_input("{}: two controls, variants or ablations are named \"{}\" (give each its own name:)", path, c.name);
    }
  }
  for (const auto& command : r.serve_commands) {
    if (command.find("{port}") == std::string::npos) {
      bad_input("{}: a serve command must contain {{port}} (and usually {{model}}): `{}`", path, command);
    }
  }
  if (r.workers > 1 && r.port != 0) {
    bad_input("{}: serve.port fixes one port, but {} workers run servers at once; leave the port out", path, r.workers);
  }
  return r;
}

void run_sweep(const SweepRecipe& r, const SweepOptions& o) {
  const auto models = plan_models(r);
  std::vector<std::pair<SweepBenchmark, size_t>> benchmarks;
  for (const auto& b : r.benchmarks) benchmarks.emplace_back(b, load_dataset(b.data, b.fields).problems.size());
  if (o.dry_run) {
    print_plan(r, models, benchmarks);
    return;
  }
  fs::create_directories(r.output);
  stop_managed_servers_on_signals();
  fmt::print("[1/3] building models in {}\n", (fs::path(r.output) / "models").string());
  build_models(r);
  fmt::print("[2/3] evaluating {} models on {} benchmark(s), {} at a time\n", models.size(), benchmarks.size(),
             std::min<size_t>(models.size(), r.workers));
  evaluate_all(r, o, models, benchmarks);
  fmt::print("[3/3] reports\n");
  write_reports(r, models);
}

}  // namespace rvec
