#include "cli/model_summary.hpp"

#include <fmt/format.h>

#include <filesystem>
#include <map>

#include "base/text.hpp"

namespace rvec::cli {
namespace {

using ojson = nlohmann::ordered_json;

template <typename T>
ojson optional_json(const std::optional<T>& value) {
  return value ? ojson(*value) : ojson(nullptr);
}

ojson config_json(const ModelConfig& c) {
  return {
      {"architecture", c.architecture()},
      {"model_type", c.model_type},
      {"hidden_size", optional_json(c.hidden_size)},
      {"num_hidden_layers", optional_json(c.num_hidden_layers)},
      {"num_attention_heads", optional_json(c.num_attention_heads)},
      {"num_key_value_heads", optional_json(c.num_key_value_heads)},
      {"head_dim", optional_json(c.head_dim)},
      {"intermediate_size", optional_json(c.intermediate_size)},
      {"vocab_size", optional_json(c.vocab_size)},
      {"tie_word_embeddings", optional_json(c.tie_word_embeddings)},
      {"torch_dtype", c.torch_dtype.empty() ? ojson(nullptr) : ojson(c.torch_dtype)},
      {"rope_theta", optional_json(c.rope_theta)},
      {"rms_norm_eps", optional_json(c.rms_norm_eps)},
  };
}

std::string shard_name(const ModelFolder& model, const SafetensorsFile& file) {
  return model.is_folder() ? std::filesystem::path(file.path()).filename().string() : file.path();
}

}  // namespace

ojson model_summary(const ModelFolder& model, SummaryDetail detail) {
  ojson out;
  out["path"] = model.path();
  out["layout"] = !model.is_folder() ? "file" : model.has_index() ? "sharded" : "single";
  out["config"] = model.config() ? config_json(*model.config()) : ojson(nullptr);
  out["parameters"] = model.parameter_count();
  out["tensor_count"] = model.tensors().size();
  out["tensor_bytes"] = model.tensor_bytes();
  uint64_t file_bytes = 0;
  for (const auto& s : model.shards()) file_bytes += s->file_size();
  out["file_bytes"] = file_bytes;

  std::map<std::string, std::array<uint64_t, 3>> dtypes;  // tensors, parameters, bytes
  ojson unsupported = ojson::array();
  for (const auto& t : model.tensors()) {
    auto& d = dtypes[std::string(dtype_name(t.info->dtype))];
    d[0] += 1;
    d[1] += t.info->element_count();
    d[2] += t.info->byte_size();
    if (is_floating(t.info->dtype) && !is_arithmetic(t.info->dtype)) unsupported.push_back(t.name());
  }
  out["dtypes"] = ojson::object();
  for (const auto& [name, d] : dtypes) out["dtypes"][name] = {{"tensors", d[0]}, {"parameters", d[1]}, {"bytes", d[2]}};
  out["unsupported_for_arithmetic"] = unsupported;

  out["tied_embeddings"] = model.tied_embeddings();
  const ModelTensor* embed = model.find(kEmbedName);
  const ModelTensor* head = model.find(kLmHeadName);
  auto rows = [](const ModelTensor* t) { return t && !t->info->shape.empty() ? ojson(t->info->shape[0]) : ojson(nullptr); };
  out["embedding_rows"] = rows(embed);
  out["lm_head_rows"] = rows(head);
  const auto tokenizer = std::filesystem::path(model.path()) / "tokenizer.json";
  std::error_code ec;
  out["tokenizer_size"] = detail.tokenizer && model.is_folder() && std::filesystem::is_regular_file(tokenizer, ec)
                              ? ojson(tokenizer_size(tokenizer.string()))
                              : ojson(nullptr);

  out["shards"] = ojson::array();
  for (const auto& s : model.shards()) {
    uint64_t bytes = 0;
    for (const auto& t : s->header().tensors) bytes += t.byte_size();
    out["shards"].push_back({{"file", shard_name(model, *s)},
                             {"file_bytes", s->file_size()},
                             {"header_bytes", s->header().header_bytes},
                             {"tensors", s->header().tensors.size()},
                             {"tensor_bytes", bytes},
                             {"metadata", s->header().metadata}});
  }
  out["aux_files"] = model.aux_files();
  if (detail.tensors) {
    out["tensors"] = ojson::array();
    for (const auto& t : model.tensors()) {
      out["tensors"].push_back({{"name", t.name()},
                                {"dtype", std::string(dtype_name(t.info->dtype))},
                                {"shape", t.info->shape},
                                {"shard", shard_name(model, *t.file)},
                                {"data_offsets", {t.info->begin, t.info->end}}});
    }
  }
  return out;
}

std::string model_one_line(const ojson& s) {
  std::string arch = s["config"].is_null() ? "no config.json" : s["config"]["architecture"].get<std::string>();
  std::vector<std::string> dtypes;
  for (const auto& [name, d] : s["dtypes"].items()) dtypes.push_back(name);
  return fmt::format("{}, {} params, {}, {}", arch, human_count(s["parameters"].get<uint64_t>()), fmt::join(dtypes, "+"),
                     s["tied_embeddings"].get<bool>() ? "tied" : "untied");
}

}  // namespace rvec::cli
