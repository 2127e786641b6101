#include "engine/engine_config.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <filesystem>
#include <limits>

#include "base/error.hpp"
#include "base/json.hpp"
#include "base/text.hpp"

namespace rvec {
namespace {

using nlohmann::json;

const json* field(const json& object, const char* name) {
  const auto it = object.find(name);
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

// A positive, finite number that stays so in f32 (the engine's arithmetic).
float positive_float(const std::optional<double>& value, double fallback, const char* name, const std::string& origin) {
  const double v = value.value_or(fallback);
  if (!(v > 0) || !std::isfinite(v) || v > FLT_MAX || static_cast<float>(v) == 0.0f) {
    bad_input("{}: {} is {}; the engine needs a finite number above 0 (in float32)", origin, name, v);
  }
  return static_cast<float>(v);
}

// eos_token_id / bos_token_id: an id or a list of ids. Ids past the embedding
// rows can never be produced (some configs keep the full tokenizer's ids), so
// they are dropped; anything but a non-negative integer is refused.
std::vector<TokenId> special_ids(const json& root, const char* name, size_t vocab, const std::string& origin) {
  std::vector<TokenId> ids;
  const json* value = field(root, name);
  if (value == nullptr) return ids;
  for (const auto& item : value->is_array() ? *value : json::array({*value})) {
    const auto id = non_negative_integer(item);
    if (!id)
      bad_input("{}: field \"{}\" must be a token id or a list of token ids, found {}", origin, name, item.dump());
    if (*id < vocab) ids.push_back(static_cast<TokenId>(*id));
  }
  return ids;
}

void check_activation(const json& raw, const std::string& origin) {
  const json* act = field(raw, "hidden_act");
  if (act == nullptr) return;  // Qwen2 and Llama default to silu
  if (!act->is_string()) bad_input("{}: field \"hidden_act\" must be a string, found {}", origin, act->dump());
  const auto& name = act->get_ref<const std::string&>();
  if (name != "silu" && name != "swish") {
    bad_input("{}: hidden_act \"{}\" is not supported by the built-in engine (it implements silu)", origin,
              printable(name));
  }
}

void check_rope_type(const json& raw, const std::string& origin) {
  for (const char* name : {"rope_scaling", "rope_parameters"}) {
    const json* rope = field(raw, name);
    if (rope == nullptr) continue;
    if (!rope->is_object()) bad_input("{}: field \"{}\" must be an object, found {}", origin, name, rope->dump());
    const json* type = field(*rope, "rope_type");
    if (type == nullptr) type = field(*rope, "type");
    if (type != nullptr && *type != "default") {
      bad_input("{}: {} of type {} is not supported by the built-in engine (only default RoPE)", origin, name,
                type->dump());
    }
  }
}

void check_no_sliding_window(const json& raw, const std::string& origin) {
  const json* sliding = field(raw, "use_sliding_window");
  if (sliding == nullptr) return;
  if (!sliding->is_boolean()) bad_input("{}: field \"use_sliding_window\" must be true or false", origin);
  if (sliding->get<bool>()) {
    bad_input("{}: use_sliding_window is true; the built-in engine has no sliding-window attention", origin);
  }
}

// Rows (dim 0) or columns (dim 1) of `tensor` must be `want`, which the config
// fields described by `stated` imply. Missing or misshaped tensors are left to
// the weight loader, which names them.
void check_dim(const ModelFolder& model, const std::string& tensor, size_t dim, uint64_t want,
               const std::string& stated, const std::string& origin) {
  const ModelTensor* t = model.find_resolving_tied(tensor);
  if (t == nullptr || t->info->shape.size() != 2 || t->info->shape[dim] == want) return;
  bad_input("{}: {} but {} has {} {}", origin, stated, tensor, t->info->shape[dim], dim == 0 ? "rows" : "columns");
}

bool has_layer(const ModelFolder& model, size_t layer) {
  const std::string prefix = fmt::format("model.layers.{}.", layer);
  return std::any_of(model.tensors().begin(), model.tensors().end(),
                     [&](const ModelTensor& t) { return t.name().starts_with(prefix); });
}

void check_against_tensors(const ModelFolder& model, const TransformerConfig& t, const std::string& origin) {
  if (has_layer(model, t.layers)) {
    bad_input("{}: num_hidden_layers is {} but the checkpoint has more layers (model.layers.{}.*)", origin, t.layers,
              t.layers);
  }
  if (!has_layer(model, t.layers - 1)) {
    bad_input("{}: num_hidden_layers is {} but the checkpoint has no model.layers.{}.*", origin, t.layers,
              t.layers - 1);
  }
  const std::string embed(kEmbedName), head(kLmHeadName);
  check_dim(model, embed, 0, t.vocab, fmt::format("vocab_size is {}", t.vocab), origin);
  check_dim(model, head, 0, t.vocab, fmt::format("vocab_size is {}", t.vocab), origin);
  check_dim(model, embed, 1, t.hidden, fmt::format("hidden_size is {}", t.hidden), origin);
  check_dim(model, "model.layers.0.self_attn.q_proj.weight", 0, t.q_dim(),
            fmt::format("num_attention_heads {} × head_dim {} is {}", t.heads, t.head_dim, t.q_dim()), origin);
  check_dim(model, "model.layers.0.self_attn.k_proj.weight", 0, t.kv_dim(),
            fmt::format("num_key_value_heads {} × head_dim {} is {}", t.kv_heads, t.head_dim, t.kv_dim()), origin);
  check_dim(model, "model.layers.0.mlp.gate_proj.weight", 0, t.intermediate,
            fmt::format("intermediate_size is {}", t.intermediate), origin);
}

// The sizes config.json states, each checked on its own.
TransformerConfig read_sizes(const ModelConfig& c, const std::string& origin) {
  const auto need = [&](const std::optional<uint64_t>& value, const char* name) {
    if (!value || *value == 0) bad_input("{}: field \"{}\" is missing or zero", origin, name);
    return static_cast<size_t>(*value);
  };
  TransformerConfig t;
  t.hidden = need(c.hidden_size, "hidden_size");
  t.layers = need(c.num_hidden_layers, "num_hidden_layers");
  t.heads = need(c.num_attention_heads, "num_attention_heads");
  t.kv_heads = c.num_key_value_heads.value_or(t.heads);
  t.head_dim = c.head_dim.value_or(t.hidden / t.heads);
  t.intermediate = need(c.intermediate_size, "intermediate_size");
  t.vocab = need(c.vocab_size, "vocab_size");
  t.max_positions = c.max_position_embeddings.value_or(4096);
  if (t.max_positions == 0) bad_input("{}: max_position_embeddings is 0", origin);
  if (t.vocab > static_cast<size_t>(std::numeric_limits<TokenId>::max())) {
    bad_input("{}: vocab_size {} is more than the engine's token ids reach (2^31 - 1)", origin, t.vocab);
  }
  if (t.kv_heads == 0 || t.heads % t.kv_heads != 0) {
    bad_input("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", origin, t.heads, t.kv_heads);
  }
  if (t.head_dim == 0 || t.head_dim % 2 != 0) {
    bad_input("{}: head_dim is {}; RoPE needs an even number above 0", origin, t.head_dim);
  }
  return t;
}

// Stop ids from config.json, then those generation_config.json adds.
std::vector<TokenId> read_eos_ids(const json& raw, const std::string& folder, size_t vocab, const std::string& origin) {
  auto ids = special_ids(raw, "eos_token_id", vocab, origin);
  const auto generation = std::filesystem::path(folder) / "generation_config.json";
  if (!std::filesystem::exists(generation)) return ids;
  const json extra = read_json_file(generation.string());
  if (!extra.is_object()) bad_input("{}: must hold a JSON object", generation.string());
  for (const auto id : special_ids(extra, "eos_token_id", vocab, generation.string())) {
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  }
  return ids;
}

}  // namespace

bool engine_may_ignore(const std::string& tensor_name) { return tensor_name.ends_with(".rotary_emb.inv_freq"); }

TransformerConfig read_engine_config(const ModelFolder& model, const std::string& folder) {
  if (!model.config()) bad_input("{}: no config.json, so the architecture is unknown", folder);
  const ModelConfig& c = *model.config();
  const auto config_path = (std::filesystem::path(folder) / "config.json").string();
  const auto arch = c.architecture();
  if (arch != "Qwen2ForCausalLM" && arch != "LlamaForCausalLM" && c.model_type != "qwen2" && c.model_type != "llama") {
    bad_input("{}: architecture \"{}\" is not supported by the built-in engine (Qwen2 and Llama are)", config_path,
              arch);
  }
  TransformerConfig t = read_sizes(c, config_path);
  t.architecture = arch;
  t.rms_eps = positive_float(c.rms_norm_eps, 1e-6, "rms_norm_eps", config_path);
  t.rope_theta = positive_float(c.rope_theta, 10000.0, "rope_theta", config_path);
  t.tied_head = model.tied_embeddings();
  if (c.tie_word_embeddings == true && model.find(kLmHeadName) != nullptr) {
    bad_input(
        "{}: tie_word_embeddings is true but the checkpoint has its own {} (Hugging Face would ignore it); "
        "set it to false or remove the tensor",
        config_path, kLmHeadName);
  }
  const json raw = read_json_file(config_path);
  check_activation(raw, config_path);
  check_rope_type(raw, config_path);
  check_no_sliding_window(raw, config_path);
  check_against_tensors(model, t, config_path);
  t.eos_ids = read_eos_ids(raw, folder, t.vocab, config_path);
  if (const auto bos = special_ids(raw, "bos_token_id", t.vocab, config_path); !bos.empty()) t.bos_id = bos.front();
  return t;
}

}  // namespace rvec
