#include <fmt/format.h>
#include <fmt/ranges.h>

#include <filesystem>
#include <map>

#include "base/text.hpp"
#include "cli/commands.hpp"
#include "cli/model_summary.hpp"
#include "io/gguf.hpp"
#include "text/unicode.hpp"

namespace rvec::cli {
namespace {

struct InspectOptions {
  std::string path;
  bool tensors = false;
  bool json = false;
};

std::string count_with_commas(uint64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

void print_vocab(const nlohmann::ordered_json& s) {
  if (s["embedding_rows"].is_null()) {
    fmt::print("vocab     no {} tensor\n", kEmbedName);
    return;
  }
  const uint64_t rows = s["embedding_rows"];
  std::string line = fmt::format("vocab     embedding rows {}", rows);
  if (!s["lm_head_rows"].is_null()) line += fmt::format(", lm_head rows {}", s["lm_head_rows"].get<uint64_t>());
  if (!s["config"].is_null() && !s["config"]["vocab_size"].is_null()) {
    line += fmt::format(", config vocab_size {}", s["config"]["vocab_size"].get<uint64_t>());
  }
  if (!s["tokenizer_size"].is_null()) {
    const uint64_t tok = s["tokenizer_size"];
    line += fmt::format(", tokenizer {} ids", tok);
    if (tok < rows) line += fmt::format(" ({} rows past the tokenizer, never used)", rows - tok);
    if (tok > rows) line += fmt::format(" (WARNING: {} token ids have no embedding row)", tok - rows);
  }
  fmt::print("{}\n", line);
}

void print_human(const nlohmann::ordered_json& s, bool with_tensors) {
  fmt::print("model     {} ({})\n", s["path"].get<std::string>(), s["layout"].get<std::string>());
  if (!s["config"].is_null()) {
    const auto& c = s["config"];
    auto num = [](const nlohmann::ordered_json& v) { return v.is_null() ? std::string("?") : v.dump(); };
    fmt::print("arch      {} ({}): hidden {}, {} layers, {} heads / {} KV heads, head_dim {}, intermediate {}\n",
               c["architecture"].get<std::string>(), c["model_type"].get<std::string>(), num(c["hidden_size"]),
               num(c["num_hidden_layers"]), num(c["num_attention_heads"]), num(c["num_key_value_heads"]),
               num(c["head_dim"]), num(c["intermediate_size"]));
  } else {
    fmt::print("arch      unknown (no config.json)\n");
  }
  const uint64_t params = s["parameters"];
  fmt::print("params    {} ({})\n", count_with_commas(params), human_count(params));
  fmt::print("bytes     {} of tensor data in {} tensors, {} file(s)\n", human_bytes(s["tensor_bytes"]),
             s["tensor_count"].get<uint64_t>(), s["shards"].size());
  for (const auto& [name, d] : s["dtypes"].items()) {
    fmt::print("dtype     {:<8} {:>6} tensors  {:>16} params  {}\n", name, d["tensors"].get<uint64_t>(),
               count_with_commas(d["parameters"]), human_bytes(d["bytes"]));
  }
  if (!s["unsupported_for_arithmetic"].empty()) {
    fmt::print("unsupported  {} tensor(s) in quantised or F64/C64 types cannot be merged (first: {})\n",
               s["unsupported_for_arithmetic"].size(), s["unsupported_for_arithmetic"][0].get<std::string>());
  }
  fmt::print("tied      {}\n", s["tied_embeddings"].get<bool>() ? "yes (no lm_head.weight; the head is the embedding)"
                                                                   : "no");
  print_vocab(s);
  for (const auto& shard : s["shards"]) {
    fmt::print("shard     {}  {}  {} tensors\n", shard["file"].get<std::string>(), human_bytes(shard["file_bytes"]),
               shard["tensors"].get<uint64_t>());
  }
  fmt::print("files     {}\n", s["aux_files"].empty() ? std::string("(none)")
                                                        : fmt::format("{}", fmt::join(s["aux_files"].get<std::vector<std::string>>(), ", ")));
  if (with_tensors) {
    for (const auto& t : s["tensors"]) {
      fmt::print("tensor    {}  {}  {}  {}\n", t["name"].get<std::string>(), t["dtype"].get<std::string>(),
                 shape_string(t["shape"].get<std::vector<uint64_t>>()), t["shard"].get<std::string>());
    }
  }
}

// ------------------------------------------------------------------- GGUF --

nlohmann::ordered_json scalar_json(const GgufScalar& v) {
  return std::visit(
      [](const auto& x) -> nlohmann::ordered_json {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return replace_invalid_utf8(x);
        } else if constexpr (std::is_floating_point_v<T>) {
          return std::isfinite(x) ? nlohmann::ordered_json(x) : nlohmann::ordered_json(fmt::format("{}", x));
        } else {
          return x;
        }
      },
      v);
}

// A scalar as its value; an array as {type, count, first: up to 8 items}.
nlohmann::ordered_json value_json(const GgufValue& v) {
  if (!v.is_array()) return scalar_json(v.items.front());
  nlohmann::ordered_json first = nlohmann::ordered_json::array();
  for (size_t i = 0; i < std::min<size_t>(8, v.items.size()); ++i) first.push_back(scalar_json(v.items[i]));
  return {{"type", std::string(gguf_value_type_name(v.element_type))}, {"count", v.items.size()}, {"first", first}};
}

uint64_t element_count(const GgufTensorInfo& t) {
  uint64_t n = 1;
  for (uint64_t d : t.ne) n *= d;
  return n;
}

nlohmann::ordered_json gguf_summary(const std::string& path, const GgufFile& file, bool with_tensors) {
  nlohmann::ordered_json s;
  s["path"] = path;
  s["format"] = "gguf";
  s["version"] = file.version;
  s["file_bytes"] = std::filesystem::file_size(path);
  s["alignment"] = file.alignment;
  s["data_start"] = file.data_start;
  s["metadata"] = nlohmann::ordered_json::object();
  for (const auto& kv : file.metadata) s["metadata"][kv.key] = value_json(kv.value);
  uint64_t params = 0, bytes = 0;
  std::map<std::string, std::array<uint64_t, 3>> types;  // tensors, parameters, bytes
  for (const auto& t : file.tensors) {
    auto& entry = types[std::string(find_ggml_type(t.type)->name)];
    entry[0] += 1;
    entry[1] += element_count(t);
    entry[2] += t.bytes;
    params += element_count(t);
    bytes += t.bytes;
  }
  s["parameters"] = params;
  s["tensor_bytes"] = bytes;
  s["tensor_count"] = file.tensors.size();
  s["types"] = nlohmann::ordered_json::object();
  for (const auto& [name, e] : types) s["types"][name] = {{"tensors", e[0]}, {"parameters", e[1]}, {"bytes", e[2]}};
  if (with_tensors) {
    s["tensors"] = nlohmann::ordered_json::array();
    for (const auto& t : file.tensors) {
      s["tensors"].push_back({{"name", t.name}, {"type", std::string(find_ggml_type(t.type)->name)}, {"ne", t.ne},
                              {"offset", file.data_start + t.offset}, {"bytes", t.bytes}});
    }
  }
  return s;
}

std::string key_text(const GgufFile& file, std::string_view key) {
  const GgufValue* v = find_key(file.metadata, key);
  return v == nullptr ? "?" : printable(v->describe());
}

void print_gguf(const std::string& path, const GgufFile& file, const nlohmann::ordered_json& s, bool with_tensors) {
  fmt::print("model     {} (GGUF v{}, alignment {})\n", path, file.version, file.alignment);
  fmt::print("arch      {}  name \"{}\"  file type {}\n", key_text(file, "general.architecture"),
             key_text(file, "general.name"), key_text(file, "general.file_type"));
  const uint64_t params = s["parameters"];
  fmt::print("params    {} ({})\n", count_with_commas(params), human_count(params));
  fmt::print("bytes     {} of tensor data in {} tensors, {} file bytes\n", human_bytes(s["tensor_bytes"]),
             file.tensors.size(), human_bytes(s["file_bytes"]));
  for (const auto& [name, t] : s["types"].items()) {
    fmt::print("type      {:<8} {:>6} tensors  {:>16} params  {}\n", name, t["tensors"].get<uint64_t>(),
               count_with_commas(t["parameters"]), human_bytes(t["bytes"]));
  }
  for (const auto& kv : file.metadata) {
    std::string text = printable(kv.value.describe());
    if (text.size() > 100) text = text.substr(0, 97) + "...";
    fmt::print("key       {} = {}\n", printable(kv.key), text);
  }
  if (!with_tensors) return;
  for (const auto& t : file.tensors) {
    fmt::print("tensor    {}  {}  ne {}  at {}\n", t.name, find_ggml_type(t.type)->name, shape_string(t.ne),
               file.data_start + t.offset);
  }
}

bool is_gguf_path(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec) && is_gguf_file(path);
}

}  // namespace

void add_inspect(CLI::App& app, int& exit_code) {
  auto opts = std::make_shared<InspectOptions>();
  auto* cmd = app.add_subcommand("inspect", "Describe a model folder, a .safetensors or a .gguf file (validates it fully)");
  cmd->footer(
      "Examples:\n"
      "  rvec inspect models/Qwen2.5-7B-Instruct\n"
      "  rvec inspect model.safetensors --tensors\n"
      "  rvec inspect models/pre --json | jq .parameters\n"
      "  rvec inspect merged-q8_0.gguf --tensors\n"
      "The JSON fields are documented in docs/inspect-json.md.");
  cmd->add_option("path", opts->path, "Model folder or .safetensors file")->required();
  cmd->add_flag("--tensors", opts->tensors, "List every tensor (name, dtype, shape, shard)");
  cmd->add_flag("--json", opts->json, "Print one JSON object for scripts");
  cmd->callback([opts, &exit_code] {
    if (is_gguf_path(opts->path)) {
      const GgufFile file = read_gguf_file(opts->path);
      const auto summary = gguf_summary(opts->path, file, opts->tensors);
      if (opts->json) {
        fmt::print("{}\n", summary.dump(2));
      } else {
        print_gguf(opts->path, file, summary, opts->tensors);
      }
      exit_code = 0;
      return;
    }
    const auto model = ModelFolder::open(opts->path);
    const auto summary = model_summary(*model, {.tensors = opts->tensors});
    if (opts->json) {
      fmt::print("{}\n", summary.dump(2));
    } else {
      print_human(summary, opts->tensors);
    }
    exit_code = 0;
  });
}

}  // namespace rvec::cli
