#include "eval/runner.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "base/error.hpp"
#include "base/hash.hpp"
#include "base/json.hpp"
#include "base/progress.hpp"
#include "base/regular_file.hpp"
#include "base/test_hooks.hpp"
#include "base/text.hpp"
#include "base/thread_pool.hpp"

namespace rvec {

const char* const kDefaultIntegerPrompt =
    "次の数学の問題を解いてください。途中の考え方を示し、最終的な答え（整数）を \\boxed{} の中に書いてください。\n\n"
    "{question}";
const char* const kDefaultChoicePrompt =
    "次の問題に答えてください。最終的な答えを選択肢の記号（A〜E）で \\boxed{} の中に書いてください。\n\n{question}";

namespace {

using nlohmann::json;
using SampleKey = std::pair<std::string, int>;

std::string render_prompt(const std::string& tmpl, const std::string& question) {
  std::string out = tmpl;
  const auto at = out.find("{question}");
  out.replace(at, 10, question);
  return out;
}

// Identifies what produced a sample: everything that changes the answer.
std::string run_fingerprint(const EvalOptions& o, const std::string& prompt) {
  json fields = {{"model", o.client.model}, {"temperature", o.client.temperature},
                 {"top_p", o.client.top_p}, {"max_tokens", o.client.max_tokens},
                 {"stop", o.client.stop},   {"seed", o.seed},
                 {"prompt", prompt},        {"system", o.system_prompt},
                 {"label", o.label},        {"data", std::filesystem::path(o.data).filename().string()}};
  if (!o.vector.empty()) fields["vector"] = o.vector;
  return hex64(fnv1a64(fields.dump()));
}

// Reads the samples already recorded; cuts off a torn last line left by a crash.
std::set<SampleKey> recorded_samples(const std::string& path, const std::string& fingerprint) {
  std::set<SampleKey> done;
  if (!std::filesystem::exists(path)) return done;
  std::string text = read_small_file(path, 4ull << 30);
  if (!text.empty() && text.back() != '\n') {
    const auto keep = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
    std::filesystem::resize_file(path, keep);
    text.resize(keep);
  }
  size_t line_no = 0, at = 0;
  while (at < text.size()) {
    const size_t end = text.find('\n', at);
    const std::string line = text.substr(at, end - at);
    at = end + 1;
    ++line_no;
    const auto record = json::parse(line, nullptr, false);
    const bool keyed =
        record.is_object() && record.contains("id") && record["id"].is_string() && record.contains("sample");
    const auto sample = keyed ? non_negative_integer(record["sample"]) : std::nullopt;
    if (!sample || *sample > static_cast<uint64_t>(std::numeric_limits<int>::max())) {
      bad_input("{}:{}: not an rvec eval record", path, line_no);
    }
    if (record.value("run", json()) != fingerprint) {
      fail(ErrorKind::kUsage,
           "{} holds samples from another configuration (line {}: model, sampling, prompt or label differ); "
           "write to a new file",
           path, line_no);
    }
    done.emplace(record["id"].get<std::string>(), static_cast<int>(*sample));
  }
  return done;
}

class ResultsFile {
 public:
  explicit ResultsFile(const std::string& path)
      : path_(path), fd_(open_regular_file(path, O_WRONLY | O_CREAT | O_APPEND)) {}
  // One write() per record, so a record is whole or (after a crash mid-write) cut and dropped on resume.
  void append(const json& record) {
    const std::string line = record.dump() + "\n";
    std::lock_guard lock(mutex_);
    if (::write(fd_.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size())) fail_errno(path_);
  }

 private:
  std::string path_;
  FileDescriptor fd_;
  std::mutex mutex_;
};

}  // namespace

uint64_t sample_seed(uint64_t run_seed, const std::string& id, int sample) {
  const uint64_t h = fnv1a64(id) ^ (run_seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(sample));
  return mix64(h) & 0x7FFFFFFF;  // servers often take a signed 32-bit seed
}

namespace {

// The fail-loud rule: once this many samples are done, a run where more than
// half of them failed stops and reports no score.
constexpr size_t kAbortMinSamples = 8;

struct Task {
  const Problem* problem;
  int sample;
};

// Every (problem, sample) not recorded yet; counts the total and the reused.
std::vector<Task> pending_tasks(const Dataset& data, int samples, const std::set<SampleKey>& done,
                                EvalSummary& summary) {
  std::vector<Task> tasks;
  for (const auto& p : data.problems) {
    for (int s = 0; s < samples; ++s) {
      ++summary.total;
      if (done.count({p.id, s})) {
        ++summary.reused;
      } else {
        tasks.push_back({&p, s});
      }
    }
  }
  return tasks;
}

// Everything one evaluation shares across its worker threads.
struct EvalRun {
  const EvalOptions& options;
  const Dataset& data;
  const std::string& prompt_template;
  const std::string& fingerprint;
  ResultsFile& results;
  std::atomic<size_t> finished{0}, failed{0}, correct{0};
  std::atomic<bool> abort{false};
  std::mutex mutex;  // guards last_error and the progress bar
  std::string last_error;
};

json sample_record(const EvalRun& run, const Task& task, const std::string& prompt, uint64_t seed,
                   const ChatResult& r, const Grade& g) {
  const EvalOptions& o = run.options;
  json record = {{"id", task.problem->id}, {"sample", task.sample}, {"run", run.fingerprint},
                 {"label", o.label}, {"model", o.client.model}, {"seed", seed},
                 {"temperature", o.client.temperature}, {"top_p", o.client.top_p},
                 {"max_tokens", o.client.max_tokens}, {"prompt", prompt},
                 {"response", r.content}, {"reasoning", r.reasoning}, {"finish_reason", r.finish_reason},
                 {"prompt_tokens", r.prompt_tokens}, {"completion_tokens", r.completion_tokens},
                 {"latency_s", r.latency_s}, {"answer", task.problem->answer},
                 {"extracted", g.extracted ? json(*g.extracted) : json()}, {"rule", g.rule},
                 {"verdict", g.verdict}, {"mode", grade_mode_name(o.mode)},
                 {"kind", run.data.kind == TaskKind::kChoice ? "choice" : "integer"}};
  if (o.w) record["w"] = *o.w;
  if (!o.vector.empty()) record["vector"] = o.vector;
  if (!r.ok) record["error"] = r.error;
  return record;
}

// Requests, grades and records one sample. A transport failure after every
// retry is not recorded (it is retried on resume) but counts as failed.
void evaluate_sample(EvalRun& run, ChatClient& client, const Task& task) {
  const EvalOptions& o = run.options;
  std::vector<ChatMessage> messages;
  if (!o.system_prompt.empty()) messages.push_back({"system", o.system_prompt});
  const std::string prompt = render_prompt(run.prompt_template, task.problem->question);
  messages.push_back({"user", prompt});
  const uint64_t seed = sample_seed(o.seed, task.problem->id, task.sample);
  const ChatResult r = client.complete(messages, seed);
  if (!r.ok && !r.final_failure) {
    const std::lock_guard lock(run.mutex);
    run.last_error = r.error;
    ++run.failed;
    return;
  }
  const std::string graded_text = r.content.empty() && !r.reasoning.empty() ? r.reasoning : r.content;
  const Grade g = r.ok ? grade_response(graded_text, task.problem->answer, o.mode, run.data.kind)
                       : Grade{std::nullopt, "none", "error"};
  run.results.append(sample_record(run, task, prompt, seed, r, g));
  if (g.verdict == "correct") ++run.correct;
  if (!r.ok) ++run.failed;
}

// Runs every task on `concurrency` threads, one HTTP connection each.
void evaluate_tasks(EvalRun& run, const std::vector<Task>& tasks) {
  const EvalOptions& o = run.options;
  ProgressBar bar(fmt::format("eval {}", o.label), tasks.size(), o.progress, ProgressBar::Units::kItems);
  const std::optional<uint64_t> exit_after = test_hooks::exit_after_samples();
  ThreadPool pool(std::clamp<size_t>(static_cast<size_t>(o.concurrency), 1, std::max<size_t>(tasks.size(), 1)));
  std::vector<std::unique_ptr<ChatClient>> clients(pool.size());
  pool.parallel_for_workers(tasks.size(), [&](size_t worker, size_t index) {
    if (run.abort) return;
    if (!clients[worker]) clients[worker] = std::make_unique<ChatClient>(o.client);
    evaluate_sample(run, *clients[worker], tasks[index]);
    const size_t n = ++run.finished;
    if (exit_after && n >= *exit_after) std::_Exit(9);  // test hook: a crash
    if (n >= kAbortMinSamples && run.failed * 2 > n) run.abort = true;
    const std::lock_guard lock(run.mutex);
    bar.set_note(fmt::format("acc {:.3f}", static_cast<double>(run.correct) / static_cast<double>(n)));
    bar.update(n);
  });
  bar.finish();
}

}  // namespace

EvalSummary run_eval(const EvalOptions& o) {
  if (o.samples < 1) fail(ErrorKind::kUsage, "--samples must be at least 1");
  if (o.concurrency < 1) fail(ErrorKind::kUsage, "--concurrency must be at least 1");
  const Dataset data = load_dataset(o.data, o.fields);
  const std::string tmpl = !o.prompt_template.empty() ? o.prompt_template
                           : data.kind == TaskKind::kChoice ? kDefaultChoicePrompt : kDefaultIntegerPrompt;
  if (tmpl.find("{question}") == std::string::npos) fail(ErrorKind::kUsage, "the prompt template has no {{question}}");
  const std::string fingerprint = run_fingerprint(o, tmpl);
  EvalSummary summary;
  const std::vector<Task> tasks = pending_tasks(data, o.samples, recorded_samples(o.output, fingerprint), summary);
  ResultsFile results(o.output);
  EvalRun run{o, data, tmpl, fingerprint, results};
  evaluate_tasks(run, tasks);
  summary.requested = run.finished;
  summary.failed = run.failed;
  summary.correct = run.correct;
  summary.graded = summary.requested - summary.failed;
  if (run.abort || (summary.requested > 0 && summary.failed == summary.requested)) {
    fail(ErrorKind::kIo, "{} of {} requests failed, so no score is reported (last error: {}); fix the server and "
         "re-run the same command to resume", summary.failed, summary.requested, run.last_error);
  }
  return summary;
}

}  // namespace rvec
