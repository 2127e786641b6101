#include <fmt/format.h>
#include <fmt/ranges.h>

#include "base/text.hpp"
#include "cli/commands.hpp"
#include "cli/model_summary.hpp"

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

}  // namespace

void add_inspect(CLI::App& app, int& exit_code) {
  auto opts = std::make_shared<InspectOptions>();
  auto* cmd = app.add_subcommand("inspect", "Describe a model folder or a .safetensors file (validates it fully)");
  cmd->footer(
      "Examples:\n"
      "  rvec inspect models/Qwen2.5-7B-Instruct\n"
      "  rvec inspect model.safetensors --tensors\n"
      "  rvec inspect models/pre --json | jq .parameters\n"
      "The JSON fields are documented in docs/inspect-json.md.");
  cmd->add_option("path", opts->path, "Model folder or .safetensors file")->required();
  cmd->add_flag("--tensors", opts->tensors, "List every tensor (name, dtype, shape, shard)");
  cmd->add_flag("--json", opts->json, "Print one JSON object for scripts");
  cmd->callback([opts, &exit_code] {
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
