#include "eval/runner.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "base/error.hpp"
#include "base/hash.hpp"
#include "base/json.hpp"
#include "base/progress.hpp"
#include "base/regular_file.hpp"
#include "base/text.hpp"

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

EvalSummary run_eval(const EvalOptions& o) {
  if (o.samples < 1) fail(ErrorKind::kUsage, "--samples must be at least 1");
  if (o.concurrency < 1) fail(ErrorKind::kUsage, "--concurrency must be at least 1");
  const Dataset data = load_dataset(o.data, o.fields);
  const std::string tmpl = !o.prompt_template.empty() ? o.prompt_template
                           : data.kind == TaskKind::kChoice ? kDefaultChoicePrompt : kDefaultIntegerPrompt;
  if (tmpl.find("{question}") == std::string::npos) fail(ErrorKind::kUsage, "the prompt template has no {{question}}");
  const std::string fingerprint = run_fingerprint(o, tmpl);
  const auto done = recorded_samples(o.output, fingerprint);

  struct Task {
    const Problem* problem;
    int sample;
  };
  std::vector<Task> tasks;
  EvalSummary summary;
  for (const auto& p : data.problems) {
    for (int s = 0; s < o.samples; ++s) {
      ++summary.total;
      if (done.count({p.id, s})) {
        ++summary.reused;
      } else {
        tasks.push_back({&p, s});
      }
    }
  }
  ResultsFile results(o.output);
  ProgressBar bar(fmt::format("eval {}", o.label), tasks.size(), o.progress, ProgressBar::Units::kItems);
  std::atomic<size_t> next{0}, finished{0}, failed{0}, correct{0};
  std::atomic<bool> abort{false};
  std::mutex error_mutex;
  std::string last_error;
  const long exit_after = std::getenv("RVEC_TEST_EXIT_AFTER_SAMPLES") ? std::atol(std::getenv("RVEC_TEST_EXIT_AFTER_SAMPLES")) : -1;
  std::string worker_error;
  const auto work = [&] {
    ChatClient client(o.client);
    while (!abort) {
      const size_t index = next++;
      if (index >= tasks.size()) return;
      const Task& task = tasks[index];
      std::vector<ChatMessage> messages;
      if (!o.system_prompt.empty()) messages.push_back({"system", o.system_prompt});
      const std::string prompt = render_prompt(tmpl, task.problem->question);
      messages.push_back({"user", prompt});
      const uint64_t seed = sample_seed(o.seed, task.problem->id, task.sample);
      const ChatResult r = client.complete(messages, seed);
      if (!r.ok && !r.final_failure) {  // transport failure after every retry: not recorded, retried on resume
        std::lock_guard lock(error_mutex);
        last_error = r.error;
        ++failed;
      } else {
        const std::string graded_text = r.content.empty() && !r.reasoning.empty() ? r.reasoning : r.content;
        const Grade g = r.ok ? grade_response(graded_text, task.problem->answer, o.mode, data.kind)
                             : Grade{std::nullopt, "none", "error"};
        json record = {{"id", task.problem->id}, {"sample", task.sample}, {"run", fingerprint},
                       {"label", o.label}, {"model", o.client.model}, {"seed", seed},
                       {"temperature", o.client.temperature}, {"top_p", o.client.top_p},
                       {"max_tokens", o.client.max_tokens}, {"prompt", prompt},
                       {"response", r.content}, {"reasoning", r.reasoning}, {"finish_reason", r.finish_reason},
                       {"prompt_tokens", r.prompt_tokens}, {"completion_tokens", r.completion_tokens},
                       {"latency_s", r.latency_s}, {"answer", task.problem->answer},
                       {"extracted", g.extracted ? json(*g.extracted) : json()}, {"rule", g.rule},
                       {"verdict", g.verdict}, {"mode", grade_mode_name(o.mode)},
                       {"kind", data.kind == TaskKind::kChoice ? "choice" : "integer"}};
        if (o.w) record["w"] = *o.w;
        if (!o.vector.empty()) record["vector"] = o.vector;
        if (!r.ok) record["error"] = r.error;
        results.append(record);
        if (g.verdict == "correct") ++correct;
        if (!r.ok) ++failed;
      }
      const size_t n = ++finished;
      if (exit_after >= 0 && static_cast<long>(n) >= exit_after) std::_Exit(9);  // test hook: a crash
      // Fail loudly: a run where most requests fail reports no score.
      if (n >= 8 && failed * 2 > n) abort = true;
    }
  };
  const auto worker = [&] {
    try {
      work();
    } catch (const Error& e) {  // e.g. the results file cannot be written: stop everyone
      std::lock_guard lock(error_mutex);
      worker_error = e.what();
      abort = true;
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < std::min<int>(o.concurrency, static_cast<int>(std::max<size_t>(tasks.size(), 1))); ++i) {
    threads.emplace_back(worker);
  }
  while (finished < tasks.size() && !abort) {
    bar.set_note(fmt::format("acc {:.3f}", finished ? static_cast<double>(correct) / static_cast<double>(finished) : 0.0));
    bar.update(finished);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (auto& t : threads) t.join();
  bar.finish();
  if (!worker_error.empty()) throw Error(ErrorKind::kIo, worker_error);
  summary.requested = finished;
  summary.failed = failed;
  summary.correct = correct;
  summary.graded = finished - failed;
  if (abort || (summary.requested > 0 && summary.failed == summary.requested)) {
    fail(ErrorKind::kIo, "{} of {} requests failed, so no score is reported (last error: {}); fix the server and "
         "re-run the same command to resume", summary.failed, summary.requested, last_error);
  }
  return summary;
}

}  // namespace rvec
