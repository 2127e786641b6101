#include "eval/runner.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
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
#include "eval/record.hpp"
#include "text/unicode.hpp"

namespace rvec {

const char* const kDefaultIntegerPrompt =
    "次の数学の問題を解いてください。途中の考え方を示し、最終的な答え（整数）を \\boxed{} の中に書いてください。\n\n"
    "{question}";
const char* const kDefaultChoicePrompt =
    "次の問題に答えてください。最終的な答えを選択肢の記号（A〜E）で \\boxed{} の中に書いてください。\n\n{question}";

const char* const kDefaultScoredPrompt = "{question}\n答え：";

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
  if (!o.score.empty()) fields["score"] = o.score;
  return hex64(fnv1a64(fields.dump()));
}

// The results file, opened for appending and locked (flock) for as long as
// this run lives, so a second `rvec eval` on the same file refuses to start
// instead of writing duplicates. The lock goes with the process, also on a crash.
class ResultsFile {
 public:
  // The file is an input too (resume): one that is not a regular file is a bad input.
  explicit ResultsFile(const std::string& path)
      : path_(path), fd_((check_regular_if_present(path), open_regular_file(path, O_WRONLY | O_CREAT | O_APPEND))) {
    if (::flock(fd_.get(), LOCK_EX | LOCK_NB) == 0) return;
    if (errno == EWOULDBLOCK) {
      fail(ErrorKind::kUsage, "{}: another rvec eval is writing this file; wait for it to finish or write to another file",
           path);
    }
    fail_errno(path);
  }
  // One write() per record, so a record is whole or (after a crash mid-write) cut and dropped on resume.
  void append(const EvalRecord& record) {
    const std::string line = record.to_json().dump() + "\n";
    std::lock_guard lock(mutex_);
    if (::write(fd_.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size())) fail_errno(path_);
  }

 private:
  std::string path_;
  FileDescriptor fd_;
  std::mutex mutex_;
};

// Cuts off the tail after the last newline: a record torn by a crash mid-write.
void cut_torn_last_line(const std::string& path) {
  const FileDescriptor in = open_regular_file(path);
  struct stat st {};
  if (::fstat(in.get(), &st) != 0) fail_errno(path);
  const auto size = static_cast<uint64_t>(st.st_size);
  uint64_t end = size, keep = 0;
  std::string block;
  while (end > 0) {
    const uint64_t begin = end > 4096 ? end - 4096 : 0;
    block.resize(end - begin);
    const ssize_t got = ::pread(in.get(), block.data(), block.size(), static_cast<off_t>(begin));
    if (got < 0) fail_errno(path);
    if (static_cast<size_t>(got) != block.size()) io_error("{}: the file shrank while it was read", path);
    if (const auto newline = block.rfind('\n'); newline != std::string::npos) {
      keep = begin + newline + 1;
      break;
    }
    end = begin;
  }
  if (keep != size) std::filesystem::resize_file(path, keep);
}

// The samples already recorded (the file is locked by this run); refuses
// records of another configuration.
std::set<SampleKey> recorded_samples(const std::string& path, const std::string& fingerprint) {
  cut_torn_last_line(path);
  std::set<SampleKey> done;
  for (const auto& row : read_results_file(path)) {
    if (!row.record.sample) bad_input("{}: not an rvec eval record (no \"sample\")", row.where);
    if (row.record.run != fingerprint) {
      fail(ErrorKind::kUsage,
           "{} holds samples from another configuration (line {}: model, sampling, prompt or label differ); "
           "write to a new file",
           path, row.where.substr(path.size() + 1));
    }
    done.emplace(row.record.id, *row.record.sample);
  }
  return done;
}

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
  const std::string& benchmark;
  ResultsFile& results;
  std::atomic<size_t> finished{0}, failed{0}, correct{0};
  std::atomic<bool> abort{false};
  std::mutex mutex;  // guards last_error and the progress bar
  std::string last_error;
};

EvalRecord sample_record(const EvalRun& run, const Task& task, const std::string& prompt, uint64_t seed,
                         const ChatResult& r) {
  const EvalOptions& o = run.options;
  EvalRecord record;
  record.id = task.problem->id;
  record.sample = task.sample;
  record.run = run.fingerprint;
  record.label = o.label;
  record.benchmark = run.benchmark;
  record.model = o.client.model;
  record.w = o.w;
  record.vector = o.vector;
  record.seed = seed;
  record.temperature = o.client.temperature;
  record.top_p = o.client.top_p;
  record.max_tokens = o.client.max_tokens;
  record.prompt = prompt;
  record.response = r.content;
  record.reasoning = r.reasoning;
  record.finish_reason = r.finish_reason;
  record.prompt_tokens = r.prompt_tokens;
  record.completion_tokens = r.completion_tokens;
  record.latency_s = r.latency_s;
  record.answer = task.problem->answer;
  record.kind = run.data.kind;
  if (!r.ok) {
    record.verdict = Verdict::kError;
    record.error = r.error;
  }
  record.regrade(o.mode);
  return record;
}

// The log-likelihood of each option after `context` into `record`: the sum of
// the log-probabilities of the tokens that end after the context (a token
// that spans the boundary counts for the option). The result of the first
// request that failed, or of all of them summed.
ChatResult score_options(ChatClient& client, const std::string& context, const Problem& problem, EvalRecord& record) {
  ChatResult total;
  total.ok = true;
  const auto start = static_cast<int64_t>(utf8_character_starts(context));  // as servers count text_offset
  for (const auto& option : problem.options) {
    const std::string prompt = context + option;
    ChatResult r = client.score(prompt);
    total.latency_s += r.latency_s;
    total.prompt_tokens += r.prompt_tokens;
    total.attempts += r.attempts;
    if (!r.ok) return r;
    double sum = 0;
    const auto prompt_end = static_cast<int64_t>(utf8_character_starts(prompt));
    for (size_t i = 0; i < r.scored.size(); ++i) {
      const int64_t end = i + 1 < r.scored.size() ? r.scored[i + 1].offset : prompt_end;
      if (end > start && r.scored[i].logprob) sum += *r.scored[i].logprob;
    }
    record.option_logprobs.push_back(sum);
    record.option_bytes.push_back(static_cast<int64_t>(option.size()));
  }
  return total;
}

// Scores, grades and records one multiple-choice problem by log-likelihood;
// a failed request fails the problem as in evaluate_sample.
void evaluate_scored(EvalRun& run, ChatClient& client, const Task& task) {
  const std::string prompt = render_prompt(run.prompt_template, task.problem->question);
  EvalRecord scores;
  const ChatResult r = score_options(client, prompt, *task.problem, scores);
  if (!r.ok) {
    const std::lock_guard lock(run.mutex);
    run.last_error = r.error;
    ++run.failed;
    if (!r.final_failure) return;
  }
  EvalRecord record = sample_record(run, task, prompt, 0, r);
  record.seed.reset();
  record.temperature = 0.0;
  record.top_p.reset();
  record.max_tokens = 0;
  if (r.ok) {
    record.score = run.options.score;
    record.option_logprobs = std::move(scores.option_logprobs);
    record.option_bytes = std::move(scores.option_bytes);
    record.response = task.problem->options[record.picked_option()];
    record.regrade(run.options.mode);
  }
  run.results.append(record);
  if (record.verdict == Verdict::kCorrect) ++run.correct;
}

// Requests, grades and records one sample. A failed request counts as
// failed; one that may succeed later (a transport failure after every retry)
// is not recorded, so a re-run asks again; a final one (a 400) is recorded.
void evaluate_sample(EvalRun& run, ChatClient& client, const Task& task) {
  const EvalOptions& o = run.options;
  std::vector<ChatMessage> messages;
  if (!o.system_prompt.empty()) messages.push_back({"system", o.system_prompt});
  const std::string prompt = render_prompt(run.prompt_template, task.problem->question);
  messages.push_back({"user", prompt});
  const uint64_t seed = sample_seed(o.seed, task.problem->id, task.sample);
  const ChatResult r = client.complete(messages, seed);
  if (!r.ok) {
    const std::lock_guard lock(run.mutex);
    run.last_error = r.error;
    ++run.failed;
    if (!r.final_failure) return;
  }
  const EvalRecord record = sample_record(run, task, prompt, seed, r);
  run.results.append(record);
  if (record.verdict == Verdict::kCorrect) ++run.correct;
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
    if (o.score.empty()) {
      evaluate_sample(run, *clients[worker], tasks[index]);
    } else {
      evaluate_scored(run, *clients[worker], tasks[index]);
    }
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
  if (!o.score.empty() && o.score != kScoreSum && o.score != kScorePerByte) {
    fail(ErrorKind::kUsage, "--score must be generate, {} or {} (got \"{}\")", kScoreSum, kScorePerByte, o.score);
  }
  if (!o.score.empty() && o.fields.choices.empty()) {
    fail(ErrorKind::kUsage, "--score {} scores the options of a multiple-choice data set; name them with --choices", o.score);
  }
  if (!o.score.empty() && o.samples != 1) {
    fail(ErrorKind::kUsage, "--score {} is deterministic: one sample per problem (--samples 1)", o.score);
  }
  const Dataset data = load_dataset(o.data, o.fields);
  const std::string tmpl = !o.prompt_template.empty() ? o.prompt_template
                           : !o.score.empty()                ? kDefaultScoredPrompt
                           : data.kind == TaskKind::kChoice ? kDefaultChoicePrompt
                                                            : kDefaultIntegerPrompt;
  if (tmpl.find("{question}") == std::string::npos) fail(ErrorKind::kUsage, "the prompt template has no {{question}}");
  const std::string fingerprint = run_fingerprint(o, tmpl);
  EvalSummary summary;
  ResultsFile results(o.output);
  const std::vector<Task> tasks = pending_tasks(data, o.samples, recorded_samples(o.output, fingerprint), summary);
  const std::string benchmark = o.benchmark.empty() ? std::filesystem::path(o.data).stem().string() : o.benchmark;
  EvalRun run{o, data, tmpl, fingerprint, benchmark, results};
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
