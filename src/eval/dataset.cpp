#include "eval/dataset.hpp"

#include <nlohmann/json.hpp>
#include <set>

#include "base/error.hpp"
#include "base/hash.hpp"
#include "base/json.hpp"
#include "base/regular_file.hpp"
#include "base/text.hpp"

namespace rvec {
namespace {

using nlohmann::json;

std::string field_text(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number()) return value.dump();  // integers exactly, also past 2^63
  return {};
}

// The options of a multiple-choice row: one field per option, or one field
// that holds the list of options.
std::vector<std::string> row_options(const json& row, const std::vector<std::string>& names, const std::string& path,
                                     size_t line) {
  std::vector<std::string> options;
  if (names.empty()) return options;
  for (const auto& name : names) {
    if (!row.contains(name)) bad_input("{}:{}: no choice field \"{}\"", path, line, name);
    if (names.size() == 1 && row[name].is_array()) {
      for (const auto& option : row[name]) options.push_back(field_text(option));
    } else {
      options.push_back(field_text(row[name]));
    }
  }
  if (options.size() < 2 || options.size() > kMaxOptions) {
    bad_input("{}:{}: a multiple-choice row needs 2 to {} options (\"{}\" gives {})", path, line, kMaxOptions,
              names.front(), options.size());
  }
  return options;
}

// One CSV record starting at `at` (RFC 4180 quotes; "" is a quote), advancing `at` and `line`.
std::vector<std::string> csv_record(const std::string& text, size_t& at, size_t& line, char separator,
                                    const std::string& path) {
  std::vector<std::string> cells(1);
  bool quoted = false;
  const size_t start_line = line;
  while (at < text.size()) {
    const char c = text[at++];
    if (quoted) {
      if (c == '"' && at < text.size() && text[at] == '"') {
        cells.back() += '"', ++at;
      } else if (c == '"') {
        quoted = false;
      } else {
        if (c == '\n') ++line;
        cells.back() += c;
      }
    } else if (c == '"' && cells.back().empty()) {
      quoted = true;
    } else if (c == separator) {
      cells.emplace_back();
    } else if (c == '\n') {
      ++line;
      break;
    } else if (c != '\r') {
      cells.back() += c;
    }
  }
  if (quoted) bad_input("{}:{}: a quoted field never ends", path, start_line);
  return cells;
}

// Rows of a CSV/TSV file as JSON objects keyed by the header (or by
// "question", "answer" for a headerless two-column TSV), with their line numbers.
std::vector<std::pair<size_t, json>> read_table(const std::string& path, char separator, const DatasetFields& fields) {
  const std::string text = read_small_file(path, 1ull << 30);
  std::vector<std::pair<size_t, json>> rows;
  size_t at = 0, line = 1;
  std::vector<std::string> header;
  const std::string question = fields.question.empty() ? "question" : fields.question;
  while (at < text.size()) {
    const size_t row_line = line;
    // TSV cells are not quoted (MGSM puts bare quotes inside questions).
    std::vector<std::string> cells;
    if (separator == '\t') {
      const size_t end = text.find('\n', at);
      std::string row = text.substr(at, end == std::string::npos ? std::string::npos : end - at);
      if (!row.empty() && row.back() == '\r') row.pop_back();
      at = end == std::string::npos ? text.size() : end + 1;
      ++line;
      size_t from = 0;
      while (true) {
        const size_t tab = row.find('\t', from);
        cells.push_back(row.substr(from, tab == std::string::npos ? std::string::npos : tab - from));
        if (tab == std::string::npos) break;
        from = tab + 1;
      }
    } else {
      cells = csv_record(text, at, line, separator, path);
    }
    if (cells.size() == 1 && cells[0].empty()) continue;  // blank line
    if (header.empty()) {
      const bool has_header = std::find(cells.begin(), cells.end(), question) != cells.end() ||
                              std::find(cells.begin(), cells.end(), fields.answer) != cells.end();
      if (has_header) {
        header = cells;
        continue;
      }
      header = {question, fields.answer};
    }
    if (cells.size() != header.size()) {
      bad_input("{}:{}: {} fields, the header has {}", path, row_line, cells.size(), header.size());
    }
    json row = json::object();
    for (size_t i = 0; i < cells.size(); ++i) row[header[i]] = cells[i];
    rows.emplace_back(row_line, std::move(row));
  }
  return rows;
}

std::vector<std::pair<size_t, json>> read_json_rows(const std::string& path) {
  std::vector<std::pair<size_t, json>> rows;
  if (path.ends_with(".json")) {
    const auto all = read_json_file(path);
    if (!all.is_array()) bad_input("{}: a JSON data set must be an array of objects", path);
    for (size_t i = 0; i < all.size(); ++i) rows.emplace_back(i + 1, all[i]);
    return rows;
  }
  LineReader in(path);
  size_t number = 0;
  for (std::string line; in.next(line);) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      rows.emplace_back(number, parse_json_strict(line, path));
    } catch (const Error& e) {
      bad_input("{}:{}: not a JSON object ({})", path, number, e.what());
    }
  }
  return rows;
}

}  // namespace

Dataset load_dataset(const std::string& path, const DatasetFields& fields) {
  Dataset data;
  data.path = path;
  data.kind = fields.choices.empty() ? TaskKind::kInteger : TaskKind::kChoice;
  std::vector<std::pair<size_t, json>> rows;
  if (path.ends_with(".tsv")) {
    rows = read_table(path, '\t', fields);
  } else if (path.ends_with(".csv")) {
    rows = read_table(path, ',', fields);
  } else if (path.ends_with(".jsonl") || path.ends_with(".json")) {
    rows = read_json_rows(path);
  } else {
    bad_input("{}: unknown data set format (use .jsonl, .json, .csv or .tsv)", path);
  }
  std::set<std::string> seen;
  for (const auto& [line, row] : rows) {
    if (!row.is_object()) bad_input("{}:{}: a row must be an object", path, line);
    const std::string question_field =
        !fields.question.empty() ? fields.question : row.contains("problem") ? "problem" : "question";
    Problem p;
    p.id = row.contains(fields.id) ? field_text(row[fields.id]) : std::to_string(line);
    p.question = row.contains(question_field) ? field_text(row[question_field]) : "";
    p.answer = row.contains(fields.answer) ? field_text(row[fields.answer]) : "";
    if (p.question.empty()) bad_input("{}:{}: no question in field \"{}\"", path, line, question_field);
    if (p.answer.empty()) bad_input("{}:{}: no answer in field \"{}\"", path, line, fields.answer);
    p.options = row_options(row, fields.choices, path, line);
    for (size_t c = 0; c < p.options.size(); ++c) {
      p.question += fmt::format("\n{}. {}", static_cast<char>('A' + c), p.options[c]);
    }
    if (!seen.insert(p.id).second) bad_input("{}:{}: id \"{}\" appears twice", path, line, printable(p.id));
    data.problems.push_back(std::move(p));
  }
  if (data.problems.empty()) bad_input("{}: no problems", path);
  return data;
}

bool in_dev_split(const std::string& id, double dev_fraction, uint64_t seed) {
  const uint64_t h = mix64(fnv1a64(id + "#" + std::to_string(seed)));
  return static_cast<double>(h >> 11) * 0x1.0p-53 < dev_fraction;
}

}  // namespace rvec
