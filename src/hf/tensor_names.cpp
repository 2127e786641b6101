#include "hf/tensor_names.hpp"

#include <fmt/format.h>

#include <charconv>

namespace rvec {

std::string_view module_kind_name(ModuleKind kind) {
  switch (kind) {
    case ModuleKind::kEmbeddings: return "embeddings";
    case ModuleKind::kAttnQ: return "attn_q";
    case ModuleKind::kAttnK: return "attn_k";
    case ModuleKind::kAttnV: return "attn_v";
    case ModuleKind::kAttnO: return "attn_o";
    case ModuleKind::kMlp: return "mlp";
    case ModuleKind::kNorms: return "norms";
    case ModuleKind::kLmHead: return "lm_head";
    case ModuleKind::kOther: return "other";
  }
  return "other";
}

std::string layer_tensor_name(uint64_t layer, std::string_view suffix) {
  return fmt::format("{}{}.{}", kLayerPrefix, layer, suffix);
}

std::optional<uint64_t> layer_index(std::string_view name) {
  if (!name.starts_with(kLayerPrefix)) return std::nullopt;
  uint64_t value = 0;
  const char* begin = name.data() + kLayerPrefix.size();
  const char* end_of_name = name.data() + name.size();
  const auto [end, ec] = std::from_chars(begin, end_of_name, value);
  if (ec != std::errc() || end == begin || end == end_of_name || *end != '.') return std::nullopt;
  return value;
}

const LayerTensorName* find_layer_tensor(std::string_view suffix) {
  for (const auto& t : kLayerTensors) {
    if (t.suffix == suffix) return &t;
  }
  return nullptr;
}

namespace {

// Names outside the table (other architectures' extra tensors) by their parts.
ModuleKind kind_by_parts(std::string_view name) {
  const auto has = [&](std::string_view part) { return name.find(part) != std::string_view::npos; };
  if (has("embed_tokens")) return ModuleKind::kEmbeddings;
  if (has("lm_head")) return ModuleKind::kLmHead;
  if (has("norm")) return ModuleKind::kNorms;
  if (has("q_proj")) return ModuleKind::kAttnQ;
  if (has("k_proj")) return ModuleKind::kAttnK;
  if (has("v_proj")) return ModuleKind::kAttnV;
  if (has("o_proj")) return ModuleKind::kAttnO;
  if (has("mlp.")) return ModuleKind::kMlp;
  return ModuleKind::kOther;
}

}  // namespace

ModuleKind module_kind(std::string_view name) {
  if (name == kEmbedName) return ModuleKind::kEmbeddings;
  if (name == kLmHeadName) return ModuleKind::kLmHead;
  if (name == kFinalNormName) return ModuleKind::kNorms;
  if (layer_index(name)) {
    const std::string_view suffix = name.substr(name.find('.', kLayerPrefix.size()) + 1);
    if (const LayerTensorName* t = find_layer_tensor(suffix)) return t->kind;
  }
  return kind_by_parts(name);
}

bool is_vocab_tensor(std::string_view name) { return name == kEmbedName || name == kLmHeadName; }

std::optional<std::string> gguf_tensor_name(std::string_view name) {
  if (name == kEmbedName) return "token_embd.weight";
  if (name == kLmHeadName) return "output.weight";
  if (name == kFinalNormName) return "output_norm.weight";
  const auto layer = layer_index(name);
  if (!layer) return std::nullopt;
  const LayerTensorName* t = find_layer_tensor(name.substr(name.find('.', kLayerPrefix.size()) + 1));
  if (t == nullptr) return std::nullopt;
  return fmt::format("blk.{}.{}", *layer, t->gguf);
}

}  // namespace rvec
