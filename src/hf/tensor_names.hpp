// What rvec knows about the tensor names of Hugging Face decoder checkpoints
// (Qwen2 / Qwen2.5 and Llama), as data: one table that merge rules, lineage,
// vector statistics, the engine and exporters all read.
//
//   model.embed_tokens.weight                      embeddings  [vocab, hidden]
//   model.layers.N.input_layernorm.weight          norms       [hidden]
//   model.layers.N.self_attn.{q,k,v}_proj.{weight,bias}
//   model.layers.N.self_attn.o_proj.weight         attn_o      [hidden, q_dim]
//   model.layers.N.post_attention_layernorm.weight norms       [hidden]
//   model.layers.N.mlp.{gate,up,down}_proj.weight  mlp
//   model.norm.weight                              norms       [hidden]
//   lm_head.weight                                 lm_head     [vocab, hidden] (absent when tied)
//
// Each name's GGUF counterpart (llama.cpp's tensor names) is part of the table:
// token_embd.weight, blk.N.attn_q.weight, ..., output_norm.weight, output.weight.
//
// Everything here is constant data and pure functions: thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace rvec {

inline constexpr std::string_view kEmbedName = "model.embed_tokens.weight";
inline constexpr std::string_view kLmHeadName = "lm_head.weight";
inline constexpr std::string_view kFinalNormName = "model.norm.weight";
inline constexpr std::string_view kLayerPrefix = "model.layers.";

// The kinds of module that statistics and reports group tensors by.
enum class ModuleKind { kEmbeddings, kAttnQ, kAttnK, kAttnV, kAttnO, kMlp, kNorms, kLmHead, kOther };

// "embeddings", "attn_q", "attn_k", "attn_v", "attn_o", "mlp", "norms", "lm_head", "other".
std::string_view module_kind_name(ModuleKind kind);

// The sizes a layer tensor's shape is made of.
enum class Dim { kNone, kHidden, kQ, kKv, kIntermediate };  // kQ = heads * head_dim, kKv = kv_heads * head_dim

// One tensor of every decoder layer: the name after "model.layers.N.", and
// its shape [rows] or [rows, cols].
struct LayerTensorName {
  std::string_view suffix;
  ModuleKind kind;
  Dim rows;
  Dim cols;       // kNone: a vector
  bool optional;  // the q/k/v biases exist in Qwen2, not in Llama
  std::string_view gguf;  // the name after "blk.N." in a GGUF file
};

// Every per-layer tensor, in Hugging Face state-dict order.
inline constexpr std::array<LayerTensorName, 12> kLayerTensors = {{
    {"self_attn.q_proj.weight", ModuleKind::kAttnQ, Dim::kQ, Dim::kHidden, false, "attn_q.weight"},
    {"self_attn.q_proj.bias", ModuleKind::kAttnQ, Dim::kQ, Dim::kNone, true, "attn_q.bias"},
    {"self_attn.k_proj.weight", ModuleKind::kAttnK, Dim::kKv, Dim::kHidden, false, "attn_k.weight"},
    {"self_attn.k_proj.bias", ModuleKind::kAttnK, Dim::kKv, Dim::kNone, true, "attn_k.bias"},
    {"self_attn.v_proj.weight", ModuleKind::kAttnV, Dim::kKv, Dim::kHidden, false, "attn_v.weight"},
    {"self_attn.v_proj.bias", ModuleKind::kAttnV, Dim::kKv, Dim::kNone, true, "attn_v.bias"},
    {"self_attn.o_proj.weight", ModuleKind::kAttnO, Dim::kHidden, Dim::kQ, false, "attn_output.weight"},
    {"mlp.gate_proj.weight", ModuleKind::kMlp, Dim::kIntermediate, Dim::kHidden, false, "ffn_gate.weight"},
    {"mlp.up_proj.weight", ModuleKind::kMlp, Dim::kIntermediate, Dim::kHidden, false, "ffn_up.weight"},
    {"mlp.down_proj.weight", ModuleKind::kMlp, Dim::kHidden, Dim::kIntermediate, false, "ffn_down.weight"},
    {"input_layernorm.weight", ModuleKind::kNorms, Dim::kHidden, Dim::kNone, false, "attn_norm.weight"},
    {"post_attention_layernorm.weight", ModuleKind::kNorms, Dim::kHidden, Dim::kNone, false, "ffn_norm.weight"},
}};

// The table's entry for a layer tensor suffix, or null.
const LayerTensorName* find_layer_tensor(std::string_view suffix);

// "model.layers.7.mlp.up_proj.weight" for (7, "mlp.up_proj.weight").
std::string layer_tensor_name(uint64_t layer, std::string_view suffix);

// N of "model.layers.N.*"; nullopt for tensors outside the layers.
std::optional<uint64_t> layer_index(std::string_view tensor_name);

// The kind of a tensor: from the table, else by the name's parts ("norm"
// anywhere is a norm, "mlp." an MLP weight), else kOther.
ModuleKind module_kind(std::string_view tensor_name);

// Embedding or lm_head: the tensors whose rows are token ids.
bool is_vocab_tensor(std::string_view tensor_name);

// llama.cpp's name for a tensor of the table ("blk.7.ffn_up.weight",
// "token_embd.weight", "output.weight"); nullopt for names outside it.
std::optional<std::string> gguf_tensor_name(std::string_view tensor_name);

}  // namespace rvec
