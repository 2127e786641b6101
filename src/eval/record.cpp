#include "eval/record.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <climits>
#include <fstream>

#include "base/error.hpp"
#include "base/regular_file.hpp"
#include "base/json.hpp"
#include "text/unicode.hpp"

namespace rvec {
namespace {

using nlohmann::json;

// The fields EvalRecord reads and writes; anything else is kept in `extra`.
constexpr std::array kKnownFields = {
    "id",        "sample",      "run",          "label",         "benchmark",     "model",
    "w",         "vector",      "seed",         "temperature",   "top_p",         "max_tokens",
    "prompt",    "response",    "reasoning",    "finish_reason", "prompt_tokens", "completion_tokens",
    "latency_s", "answer",      "kind",         "extracted",     "rule",          "verdict",
    "mode",      "error",       "score",        "option_logprobs", "option_bytes"};

bool is_known_field(const std::string& name) {
  for (const char* known : kKnownFields) {
    if (name == known) return true;
  }
  return false;
}

// Reads the fields of one record, refusing a value of the wrong type with
// the record's place and the field's name. null reads as absent.
class FieldReader {
 public:
  FieldReader(const json& object, std::string_view where) : object_(object), where_(where) {}

  const json* find(const char* name) const {
    const auto it = object_.find(name);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }
  std::string string(const char* name) const {
    const json* v = find(name);
    if (v == nullptr) return {};
    if (!v->is_string()) wrong_type(name, *v, "a string");
    return v->get<std::string>();
  }
  // A string, or a number written as its JSON text (ids and answers are often numbers).
  std::string text(const char* name, bool required) const {
    const json* v = find(name);
    if (v == nullptr) {
      if (required) bad_input("{}: the record has no \"{}\"", where_, name);
      return {};
    }
    if (v->is_string()) return v->get<std::string>();
    if (v->is_number()) return v->dump();
    wrong_type(name, *v, "a string or a number");
  }
  std::optional<int64_t> integer(const char* name, int64_t min, int64_t max) const {
    const json* v = find(name);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number_integer()) wrong_type(name, *v, "an integer");
    const bool in_range = v->is_number_unsigned() ? v->get<uint64_t>() <= static_cast<uint64_t>(max)
                                                  : v->get<int64_t>() >= min && v->get<int64_t>() <= max;
    if (!in_range) bad_input("{}: field \"{}\" is {}, outside [{}, {}]", where_, name, v->dump(), min, max);
    return v->get<int64_t>();
  }
  std::optional<uint64_t> unsigned_integer(const char* name) const {
    const json* v = find(name);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number_integer() || (!v->is_number_unsigned() && v->get<int64_t>() < 0)) {
      wrong_type(name, *v, "a non-negative integer");
    }
    return v->get<uint64_t>();
  }
  std::optional<double> number(const char* name) const {
    const json* v = find(name);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number()) wrong_type(name, *v, "a number");
    return v->get<double>();
  }

  // "field \"sample\" must be an integer, not \"2\"" (a container by its kind).
  [[noreturn]] void wrong_type(const char* name, const json& value, const char* want) const {
    std::string shown = value.is_array() ? "an array" : value.is_object() ? "an object" : value.dump();
    if (shown.size() > 60) shown = shown.substr(0, 60) + "...";
    bad_input("{}: field \"{}\" must be {}, not {}", where_, name, want, replace_invalid_utf8(shown));
  }

 private:
  const json& object_;
  std::string_view where_;
};

TaskKind read_kind(const FieldReader& f, std::string_view where) {
  const std::string kind = f.string("kind");
  if (kind.empty() || kind == "integer") return TaskKind::kInteger;
  if (kind == "choice") return TaskKind::kChoice;
  bad_input("{}: field \"kind\" must be \"integer\" or \"choice\", not \"{}\"", where, kind);
}

std::optional<Verdict> read_verdict(const FieldReader& f, std::string_view where) {
  const std::string name = f.string("verdict");
  if (name.empty()) return std::nullopt;
  const auto verdict = parse_verdict(name);
  if (!verdict) bad_input("{}: field \"verdict\" must be correct, wrong, no_answer or error, not \"{}\"", where, name);
  return verdict;
}

// score, option_logprobs and option_bytes: all or none, one number per option.
void read_option_scores(const FieldReader& f, EvalRecord& r, std::string_view where) {
  r.score = f.string("score");
  if (r.score.empty()) return;
  if (r.score != kScoreSum && r.score != kScorePerByte) {
    bad_input("{}: field \"score\" must be \"{}\" or \"{}\", not \"{}\"", where, kScoreSum, kScorePerByte,
              replace_invalid_utf8(r.score));
  }
  const json* logprobs = f.find("option_logprobs");
  const json* bytes = f.find("option_bytes");
  if (logprobs == nullptr || !logprobs->is_array() || logprobs->empty() ||
      !std::all_of(logprobs->begin(), logprobs->end(), [](const json& v) { return v.is_number(); })) {
    bad_input("{}: a record with \"score\" needs \"option_logprobs\", a non-empty list of numbers", where);
  }
  if (bytes == nullptr || !bytes->is_array() || bytes->size() != logprobs->size() ||
      !std::all_of(bytes->begin(), bytes->end(),
                   [](const json& v) { return v.is_number_integer() && v.get<int64_t>() >= 0; })) {
    bad_input("{}: \"option_bytes\" must list a byte count for each of the {} options", where, logprobs->size());
  }
  r.option_logprobs = logprobs->get<std::vector<double>>();
  r.option_bytes = bytes->get<std::vector<int64_t>>();
}

}  // namespace

const char* task_kind_name(TaskKind kind) { return kind == TaskKind::kChoice ? "choice" : "integer"; }

const std::string& EvalRecord::graded_text() const { return response.empty() && !reasoning.empty() ? reasoning : response; }

size_t EvalRecord::picked_option() const {
  const auto value = [&](size_t i) {
    return score == kScorePerByte ? option_logprobs[i] / static_cast<double>(std::max<int64_t>(1, option_bytes[i]))
                                  : option_logprobs[i];
  };
  size_t best = 0;
  for (size_t i = 1; i < option_logprobs.size(); ++i) {
    if (value(i) > value(best)) best = i;
  }
  return best;
}

// A scored record's grade is its pick against the gold letter, whatever the
// grading mode: there is no text to read an answer from.
Grade EvalRecord::grade(GradeMode grading) const {
  if (failed()) return {std::nullopt, "none", Verdict::kError};
  if (score.empty()) return grade_response(graded_text(), answer, grading, kind);
  const std::string letter(1, static_cast<char>('A' + picked_option()));
  return {letter, score, letter == gold_letter(answer) ? Verdict::kCorrect : Verdict::kWrong};
}

void EvalRecord::regrade(GradeMode grading) {
  const Grade g = grade(grading);
  extracted = g.extracted;
  rule = g.rule;
  verdict = g.verdict;
  mode = grade_mode_name(grading);
}

json EvalRecord::to_json() const {
  json j = extra;
  j["id"] = id;
  j["response"] = response;
  j["answer"] = answer;
  j["kind"] = task_kind_name(kind);
  j["extracted"] = extracted ? json(*extracted) : json();
  const auto put = [&](const char* name, const auto& value) {
    if constexpr (std::is_same_v<std::decay_t<decltype(value)>, std::string>) {
      if (!value.empty()) j[name] = value;
    } else {
      if (value) j[name] = *value;
    }
  };
  put("sample", sample);
  put("run", run);
  put("label", label);
  put("benchmark", benchmark);
  put("model", model);
  put("w", w);
  put("vector", vector);
  put("seed", seed);
  put("temperature", temperature);
  put("top_p", top_p);
  put("max_tokens", max_tokens);
  put("prompt", prompt);
  put("reasoning", reasoning);
  put("finish_reason", finish_reason);
  put("latency_s", latency_s);
  put("rule", rule);
  put("mode", mode);
  put("error", error);
  if (verdict) j["verdict"] = verdict_name(*verdict);
  put("score", score);
  if (!score.empty()) {
    j["option_logprobs"] = option_logprobs;
    j["option_bytes"] = option_bytes;
  }
  if (prompt_tokens) j["prompt_tokens"] = prompt_tokens;
  if (completion_tokens) j["completion_tokens"] = completion_tokens;
  return j;
}

EvalRecord EvalRecord::from_json(const json& j, std::string_view where) {
  if (!j.is_object()) bad_input("{}: not a results record (a JSON object with id, response and answer)", where);
  const FieldReader f(j, where);
  EvalRecord r;
  r.id = f.text("id", true);
  if (f.find("response") == nullptr) bad_input("{}: the record has no \"response\"", where);
  r.response = f.string("response");
  r.answer = f.text("answer", true);
  if (const auto sample = f.integer("sample", 0, INT_MAX)) r.sample = static_cast<int>(*sample);
  r.run = f.string("run");
  r.label = f.string("label");
  r.benchmark = f.string("benchmark");
  r.model = f.string("model");
  r.w = f.number("w");
  r.vector = f.string("vector");
  r.seed = f.unsigned_integer("seed");
  r.temperature = f.number("temperature");
  r.top_p = f.number("top_p");
  r.max_tokens = f.integer("max_tokens", 0, INT64_MAX);
  r.prompt = f.string("prompt");
  r.reasoning = f.string("reasoning");
  r.finish_reason = f.string("finish_reason");
  r.prompt_tokens = f.integer("prompt_tokens", 0, INT64_MAX).value_or(0);
  r.completion_tokens = f.integer("completion_tokens", 0, INT64_MAX).value_or(0);
  r.latency_s = f.number("latency_s");
  r.kind = read_kind(f, where);
  if (f.find("extracted") != nullptr) r.extracted = f.text("extracted", false);
  r.rule = f.string("rule");
  r.verdict = read_verdict(f, where);
  r.mode = f.string("mode");
  r.error = f.string("error");
  read_option_scores(f, r, where);
  for (const auto& [name, value] : j.items()) {
    if (!is_known_field(name)) r.extra[name] = value;
  }
  return r;
}

std::vector<ResultsRow> read_results_file(const std::string& path) {
  LineReader in(path);
  std::vector<ResultsRow> rows;
  size_t line_no = 0;
  for (std::string line; in.next(line);) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::string where = fmt::format("{}:{}", path, line_no);
    const json j = parse_json_strict(line, where);
    rows.push_back({EvalRecord::from_json(j, where), std::move(where)});
  }
  return rows;
}

}  // namespace rvec
