// `rvec eval`: every problem k times against a server, graded as it arrives,
// each sample appended to a JSONL results file the moment it completes. A
// multiple-choice set may instead be scored by log-likelihood (`score`): the
// option the model finds likeliest after the prompt is its answer.
//
// Resume: the results file is the state. Re-running the same command reads
// it, skips the (problem, sample) pairs already recorded and requests only
// the rest, so a crash or Ctrl-C loses at most the samples in flight. A
// results file written by a different configuration (model, sampling,
// prompt, data) is refused rather than mixed. The file is locked (flock) while
// a run writes it: a second run on the same file refuses to start.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "eval/client.hpp"
#include "eval/dataset.hpp"
#include "eval/grader.hpp"

namespace rvec {

// Default prompts: Japanese, final answer in \boxed{}.
extern const char* const kDefaultIntegerPrompt;
extern const char* const kDefaultChoicePrompt;
// Default context for log-likelihood scoring: each option's text follows it.
extern const char* const kDefaultScoredPrompt;

struct EvalOptions {
  std::string data;
  DatasetFields fields;
  ClientOptions client;
  std::string prompt_template;  // contains {question}; empty: the default for the task kind
  std::string system_prompt;
  std::string label;            // e.g. "w=0.5"; defaults to the model name
  std::string benchmark;        // the data set's name in reports; empty: the data file's stem
  std::optional<double> w;      // the merge weight, for reports and plots
  std::string vector;           // the vector w scales when it is not the reasoning vector (e.g. "control")
  int samples = 1;
  uint64_t seed = 0;
  int concurrency = 8;
  GradeMode mode = GradeMode::kStrict;
  // Multiple choice by log-likelihood instead of a generated answer:
  // kScoreSum or kScorePerByte (record.hpp); "" generates. Each option is
  // scored by one /v1/completions request (echo, logprobs, max_tokens 0) of
  // the rendered prompt followed by the option's text.
  std::string score;
  std::string output;           // results JSONL
  bool progress = true;
};

struct EvalSummary {
  size_t total = 0, reused = 0, requested = 0, failed = 0, correct = 0, graded = 0;
};

EvalSummary run_eval(const EvalOptions& options);

// The seed sample `sample` of problem `id` is sent with: fixed by the run's
// seed, so every model and every w sees the same seeds.
uint64_t sample_seed(uint64_t run_seed, const std::string& id, int sample);

}  // namespace rvec
