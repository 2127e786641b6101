#include "hf/gguf_export.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <map>
#include <numbers>

#include "base/error.hpp"
#include "base/json.hpp"
#include "base/text.hpp"
#include "text/gguf_tokenizer.hpp"

namespace rvec {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// ------------------------------------------------------------ architecture --

struct Architecture {
  std::string_view hf;    // config.json "architectures"[0]
  std::string_view gguf;  // general.architecture
  bool interleave_qk;     // q/k rows permuted for llama.cpp's RoPE (Llama), or not (Qwen2)
};

constexpr std::array<Architecture, 2> kArchitectures = {{
    {"Qwen2ForCausalLM", "qwen2", false},
    {"LlamaForCausalLM", "llama", true},
}};

const Architecture& architecture_of(const ModelFolder& model) {
  if (!model.config()) fail(ErrorKind::kUsage, "{}: has no config.json; a GGUF file needs the model's hyperparameters", model.path());
  const std::string arch = model.config()->architecture();
  for (const auto& a : kArchitectures) {
    if (a.hf == arch) return a;
  }
  fail(ErrorKind::kUsage, "{}: architecture \"{}\" cannot be written as GGUF (rvec writes Qwen2ForCausalLM and LlamaForCausalLM)",
       model.path(), printable(arch));
}

uint64_t required(const std::optional<uint64_t>& value, const ModelFolder& model, const char* field) {
  if (!value) fail(ErrorKind::kUsage, "{}/config.json: field \"{}\" is missing; llama.cpp needs it", model.path(), field);
  return *value;
}

uint32_t as_u32(uint64_t value, const ModelFolder& model, const char* field) {
  if (value > UINT32_MAX) fail(ErrorKind::kUsage, "{}/config.json: field \"{}\" = {} does not fit a GGUF u32", model.path(), field, value);
  return static_cast<uint32_t>(value);
}

// --------------------------------------------------------------- tensor types --

// llama-quant.cpp's tensor_get_category(), for the categories the Q4_K_M mix uses.
enum class Category { kOutput, kTokenEmbd, kAttnV, kFfnDown, kOther };

Category category_of(std::string_view gguf_name) {
  if (gguf_name == "output.weight") return Category::kOutput;
  if (gguf_name == "token_embd.weight") return Category::kTokenEmbd;
  if (gguf_name.find("attn_v.weight") != std::string_view::npos) return Category::kAttnV;
  if (gguf_name.find("ffn_down") != std::string_view::npos) return Category::kFfnDown;
  return Category::kOther;
}

// use_more_bits() of llama-quant.cpp: the first and last eighth of the
// layers, and every third one between.
bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// tensor_type_fallback(): a type whose block does not divide the row length
// falls back to a 32-element type, and to F16 when that does not fit either.
DType fallback(DType type, uint64_t row) {
  if (row % dtype_block_elements(type) == 0) return type;
  DType smaller = type;
  if (type == DType::kQ4_K) smaller = DType::kQ5_0;
  if (type == DType::kQ6_K) smaller = DType::kQ8_0;
  return row % dtype_block_elements(smaller) == 0 ? smaller : DType::kF16;
}

// Picks each tensor's type; for Q4_K_M it counts attn_v and ffn_down tensors
// in file order, as llama-quantize does.
class TypeChooser {
 public:
  TypeChooser(GgufFileType type, const std::vector<GgufTensorChoice>& tensors, uint64_t layers)
      : type_(type), layers_(static_cast<int>(layers)) {
    for (const auto& t : tensors) {
      attn_v_total_ += category_of(t.name) == Category::kAttnV;
      tied_ = tied_ && t.name != "output.weight";
    }
  }

  DType choose(const std::string& gguf_name, const std::vector<uint64_t>& shape) {
    // The converter keeps vectors and norms in F32; llama-quantize leaves them so.
    if (shape.size() < 2 || gguf_name.ends_with("_norm.weight") || !gguf_name.ends_with("weight")) return DType::kF32;
    const uint64_t row = shape.back();
    switch (type_) {
      case GgufFileType::kF32: return DType::kF32;
      case GgufFileType::kF16: return DType::kF16;
      case GgufFileType::kBF16: return DType::kBF16;
      case GgufFileType::kQ8_0: return fallback(DType::kQ8_0, row);
      case GgufFileType::kQ4_K_M: return fallback(q4_k_m(gguf_name, row), row);
    }
    return DType::kF32;
  }

 private:
  // llama_tensor_get_type_impl() for LLAMA_FTYPE_MOSTLY_Q4_K_M.
  DType q4_k_m(const std::string& gguf_name, uint64_t row) {
    const Category category = category_of(gguf_name);
    if (category == Category::kOutput || (tied_ && category == Category::kTokenEmbd)) {
      return row % dtype_block_elements(DType::kQ4_K) != 0 ? DType::kQ8_0 : DType::kQ6_K;
    }
    if (category == Category::kAttnV) return use_more_bits(attn_v_seen_++, attn_v_total_) ? DType::kQ6_K : DType::kQ4_K;
    if (category == Category::kFfnDown) return use_more_bits(ffn_down_seen_++, layers_) ? DType::kQ6_K : DType::kQ4_K;
    return DType::kQ4_K;
  }

  GgufFileType type_;
  int layers_;
  int attn_v_total_ = 0, attn_v_seen_ = 0, ffn_down_seen_ = 0;
  bool tied_ = true;  // no output.weight: the embedding is also the head
};

// llama_model_loader's weight_name_comparer: layer number (-1 outside the layers), then name.
bool gguf_order(const GgufTensorChoice& a, const GgufTensorChoice& b) {
  const auto layer = [](const std::string& name) {
    int n = -1;
    if (name.starts_with("blk.")) std::from_chars(name.data() + 4, name.data() + name.size(), n);
    return n;
  };
  const int la = layer(a.name), lb = layer(b.name);
  return la != lb ? la < lb : a.name < b.name;
}

// --------------------------------------------------------------- tokenizer --

void collect_split_regexes(const json& node, std::vector<std::string>& out) {
  if (!node.is_object()) return;
  if (node.value("type", "") == "Sequence" && node.contains("pretokenizers") && node["pretokenizers"].is_array()) {
    for (const auto& inner : node["pretokenizers"]) collect_split_regexes(inner, out);
  } else if (node.value("type", "") == "Split" && node.contains("pattern") && node["pattern"].is_object() &&
             node["pattern"].contains("Regex") && node["pattern"]["Regex"].is_string()) {
    out.push_back(node["pattern"]["Regex"].get<std::string>());
  }
}

std::string pre_tokenizer_name(const json& tokenizer, const std::string& origin) {
  std::vector<std::string> regexes;
  collect_split_regexes(tokenizer.value("pre_tokenizer", json()), regexes);
  if (regexes.size() == 1) {
    for (const auto& pre : kGgufPreTokenizers) {
      if (regexes.front() == pre.regex) return std::string(pre.name);
    }
  }
  bad_input("{}: the pre-tokenizer ({}) is not one rvec can name for llama.cpp (it names Qwen2's \"qwen2\" and Llama 3's "
            "\"llama-bpe\"); convert this model with llama.cpp's convert_hf_to_gguf.py",
            origin, regexes.empty() ? std::string("no Split regex") : fmt::format("regex \"{}\"", printable(regexes.front())));
}

// convert_hf_to_gguf.py's does_token_look_special().
bool looks_special(std::string_view t) {
  return t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]" || (t.starts_with("<|") && t.ends_with("|>")) ||
         (t.starts_with("<｜") && t.ends_with("｜>")) || (t.starts_with("<unused") && t.ends_with(">"));
}

std::string replace_all(std::string text, std::string_view from, std::string_view to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

// Tokens and their types, padded with [PAD{i}] UNUSED entries to `rows`.
void add_tokens(const json& tokenizer, uint64_t rows, const std::string& origin, GgufMetadata& out) {
  std::vector<std::string> tokens(rows);
  std::vector<int32_t> types(rows, kGgufUnused);
  std::vector<bool> present(rows, false);
  const auto place = [&](uint64_t id, std::string text, int32_t type) {
    if (id >= rows) {
      bad_input("{}: token id {} has no embedding row (the model has {}); llama.cpp needs one per token", origin, id, rows);
    }
    tokens[id] = std::move(text);
    types[id] = type;
    present[id] = true;
  };
  const json& vocab = tokenizer["model"]["vocab"];
  for (const auto& [piece, id] : vocab.items()) {
    if (!id.is_number_unsigned()) bad_input("{}: model.vocab entry \"{}\" has no non-negative id", origin, printable(piece));
    place(id.get<uint64_t>(), piece, kGgufNormal);
  }
  if (tokenizer.contains("added_tokens") && tokenizer["added_tokens"].is_array()) {
    for (const auto& t : tokenizer["added_tokens"]) {
      if (!t.is_object() || !t.contains("id") || !t["id"].is_number_unsigned() || !t.contains("content") ||
          !t["content"].is_string()) {
        bad_input("{}: an entry of added_tokens lacks a non-negative id or a string content", origin);
      }
      const std::string content = t["content"].get<std::string>();
      const bool control = t.value("special", false) || looks_special(content);
      place(t["id"].get<uint64_t>(), control ? content : replace_all(content, "\xE2\x96\x81", " "), control ? kGgufControl : kGgufUserDefined);
    }
  }
  for (uint64_t i = 0; i < rows; ++i) {
    if (!present[i]) tokens[i] = fmt::format("[PAD{}]", i);
  }
  out.push_back({"tokenizer.ggml.tokens", GgufValue::strings(std::move(tokens))});
  out.push_back({"tokenizer.ggml.token_type", GgufValue::i32s(types)});
}

// Merges as "a b"; a space inside a part is written as U+0120, as the converter does.
void add_merges(const json& tokenizer, const std::string& origin, GgufMetadata& out) {
  std::vector<std::string> merges;
  const json& list = tokenizer["model"].value("merges", json::array());
  if (!list.is_array()) bad_input("{}: model.merges is not a list", origin);
  for (const auto& m : list) {
    if (m.is_string()) {
      merges.push_back(m.get<std::string>());
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      merges.push_back(replace_all(m[0].get<std::string>(), " ", "\xC4\xA0") + " " +
                       replace_all(m[1].get<std::string>(), " ", "\xC4\xA0"));
    } else {
      bad_input("{}: model.merges[{}] is neither \"a b\" nor [\"a\", \"b\"]", origin, merges.size());
    }
  }
  out.push_back({"tokenizer.ggml.merges", GgufValue::strings(std::move(merges))});
}

json read_optional_json(const fs::path& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec) ? read_json_file(path.string(), 64'000'000) : json();
}

// The content a tokenizer_config.json entry names ("<|im_end|>" or {"content": ...}).
std::optional<std::string> token_content(const json& entry) {
  if (entry.is_string()) return entry.get<std::string>();
  if (entry.is_object() && entry.contains("content") && entry["content"].is_string()) return entry["content"].get<std::string>();
  return std::nullopt;
}

// Special token ids as gguf-py's SpecialVocab finds them: tokenizer_config.json
// names an added token by content; config.json's *_token_id fills the rest.
void add_special_ids(const json& tokenizer, const json& tokenizer_config, const json& config, uint64_t rows,
                     GgufMetadata& out) {
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 6> kKeys = {{
      {"bos", "tokenizer.ggml.bos_token_id"},
      {"eos", "tokenizer.ggml.eos_token_id"},
      {"unk", "tokenizer.ggml.unknown_token_id"},
      {"sep", "tokenizer.ggml.seperator_token_id"},
      {"pad", "tokenizer.ggml.padding_token_id"},
      {"mask", "tokenizer.ggml.mask_token_id"},
  }};
  const json added = tokenizer.is_object() ? tokenizer.value("added_tokens", json::array()) : json::array();
  for (const auto& [kind, key] : kKeys) {
    std::optional<uint64_t> id;
    if (tokenizer_config.is_object()) {
      if (const auto content = token_content(tokenizer_config.value(fmt::format("{}_token", kind), json()))) {
        for (const auto& t : added) {
          if (t.is_object() && t.value("content", "") == *content && t["id"].is_number_unsigned()) {
            id = t["id"].get<uint64_t>();
            break;
          }
        }
      }
    }
    const std::string config_field = fmt::format("{}_token_id", kind);
    if (!id && config.is_object() && config.contains(config_field) && config[config_field].is_number_unsigned()) {
      id = config[config_field].get<uint64_t>();
    }
    if (!id || *id >= rows) continue;  // an id past the embedding: llama.cpp would discard it too
    out.push_back({std::string(key), GgufValue::u32(static_cast<uint32_t>(*id))});
  }
}

// add_bos_token from tokenizer_config.json, else from a post-processor
// template that starts with the BOS token; false when neither says so (no BOS
// is added, as transformers does).
bool adds_bos(const json& tokenizer, const json& tokenizer_config) {
  if (tokenizer_config.is_object() && tokenizer_config.contains("add_bos_token") && tokenizer_config["add_bos_token"].is_boolean()) {
    return tokenizer_config["add_bos_token"].get<bool>();
  }
  const auto bos = tokenizer_config.is_object() ? token_content(tokenizer_config.value("bos_token", json())) : std::nullopt;
  const json post = tokenizer.value("post_processor", json());
  if (!bos || !post.is_object()) return false;
  const json processors = post.value("processors", json::array({post}));
  for (const auto& p : processors) {
    if (!p.is_object() || p.value("type", "") != "TemplateProcessing") continue;
    const json single = p.value("single", json::array());
    if (single.is_array() && single.size() > 1 && single[0].is_object() && single[0].contains("SpecialToken") &&
        single[0]["SpecialToken"].is_object() && single[0]["SpecialToken"].value("id", "") == *bos) {
      return true;
    }
  }
  return false;
}

// tokenizer.chat_template (and tokenizer.chat_template.<name> for named templates).
void add_chat_template(const fs::path& dir, const json& tokenizer_config, GgufMetadata& out) {
  json templates = tokenizer_config.is_object() ? tokenizer_config.value("chat_template", json()) : json();
  std::error_code ec;
  if (templates.is_null() && fs::is_regular_file(dir / "chat_template.jinja", ec)) {
    templates = read_small_file((dir / "chat_template.jinja").string(), 16'000'000);
  }
  if (templates.is_null()) templates = read_optional_json(dir / "chat_template.json").value("chat_template", json());
  if (templates.is_string()) {
    out.push_back({"tokenizer.chat_template", GgufValue::string(templates.get<std::string>())});
    return;
  }
  if (!templates.is_array()) return;
  for (const auto& t : templates) {
    if (!t.is_object() || !t.contains("name") || !t["name"].is_string() || !t.contains("template") || !t["template"].is_string()) continue;
    const std::string name = t["name"].get<std::string>();
    out.push_back({name == "default" ? "tokenizer.chat_template" : "tokenizer.chat_template." + name,
                   GgufValue::string(t["template"].get<std::string>())});
  }
}

uint64_t embedding_rows(const ModelFolder& model) {
  if (const ModelTensor* e = model.find(kEmbedName); e != nullptr && !e->info->shape.empty()) return e->info->shape[0];
  return required(model.config()->vocab_size, model, "vocab_size");
}

void add_tokenizer(const ModelFolder& model, GgufMetadata& out) {
  const fs::path dir(model.path());
  const uint64_t rows = embedding_rows(model);
  const json config = read_optional_json(dir / "config.json");
  const json tokenizer_config = read_optional_json(dir / "tokenizer_config.json");
  std::error_code ec;
  if (!fs::is_regular_file(dir / "tokenizer.json", ec)) {  // token ids only: [PAD{i}] placeholders
    out.push_back({"tokenizer.ggml.model", GgufValue::string("gpt2")});
    out.push_back({"tokenizer.ggml.pre", GgufValue::string("default")});
    add_tokens(json{{"model", {{"vocab", json::object()}}}}, rows, (dir / "config.json").string(), out);
    out.push_back({"tokenizer.ggml.merges", GgufValue::strings({})});
    add_special_ids(json(), tokenizer_config, config, rows, out);
    return;
  }
  const std::string origin = (dir / "tokenizer.json").string();
  const json tokenizer = read_json_file(origin);
  if (!tokenizer.is_object() || !tokenizer.contains("model") || !tokenizer["model"].is_object() ||
      tokenizer["model"].value("type", "BPE") != "BPE" || !tokenizer["model"].contains("vocab") ||
      !tokenizer["model"]["vocab"].is_object()) {
    bad_input("{}: not a byte-level BPE tokenizer (model.type BPE with a vocab object); llama.cpp's gpt2 model needs one", origin);
  }
  out.push_back({"tokenizer.ggml.model", GgufValue::string("gpt2")});
  out.push_back({"tokenizer.ggml.pre", GgufValue::string(pre_tokenizer_name(tokenizer, origin))});
  add_tokens(tokenizer, rows, origin, out);
  add_merges(tokenizer, origin, out);
  add_special_ids(tokenizer, tokenizer_config, config, rows, out);
  out.push_back({"tokenizer.ggml.add_bos_token", GgufValue::boolean(adds_bos(tokenizer, tokenizer_config))});
  if (tokenizer_config.is_object() && tokenizer_config.contains("add_eos_token") && tokenizer_config["add_eos_token"].is_boolean()) {
    out.push_back({"tokenizer.ggml.add_eos_token", GgufValue::boolean(tokenizer_config["add_eos_token"].get<bool>())});
  }
  add_chat_template(dir, tokenizer_config, out);
}

// -------------------------------------------------------------- hyperparameters --

// Number field `field` of `from` (a part of config.json that `where` names,
// such as "rope_scaling."), if present; a usage error if it is not a number.
std::optional<double> config_number(const ModelFolder& model, const json& from, std::string_view where, const char* field) {
  if (!from.contains(field) || from[field].is_null()) return std::nullopt;
  if (!from[field].is_number()) fail(ErrorKind::kUsage, "{}/config.json: {}{} is not a number", model.path(), where, field);
  return from[field].get<double>();
}

// rope_scaling (or rope_parameters) of config.json; null if it has neither.
json rope_scaling_of(const json& config) {
  json rope = config.value("rope_scaling", json());
  if (rope.is_null()) rope = config.value("rope_parameters", json());
  return rope.is_object() ? rope : json();
}

std::string rope_type_of(const json& rope) { return rope.value("rope_type", rope.value("type", std::string("default"))); }

// rope_scaling (or rope_parameters) of config.json, as the converter writes it.
void add_rope_scaling(const ModelFolder& model, const json& config, const std::string& arch, GgufMetadata& out) {
  const json rope = rope_scaling_of(config);
  if (rope.is_null()) return;
  const std::string type = rope_type_of(rope);
  const std::string prefix = arch + ".rope.scaling.";
  const auto number = [&](const char* field) -> std::optional<float> {
    const auto value = config_number(model, rope, "rope_scaling.", field);
    return value ? std::optional<float>(static_cast<float>(*value)) : std::nullopt;
  };
  if (type == "default") return;
  if (type == "llama3" && arch == "llama") return;  // no keys: the rope_freqs.weight tensor carries it
  if (type != "linear" && type != "yarn") {
    fail(ErrorKind::kUsage,
         "{}/config.json: rope scaling type \"{}\" is not written to GGUF by rvec for {} (it writes linear and yarn, "
         "and llama3 for Llama)",
         model.path(), printable(type), arch);
  }
  const auto factor = number("factor");
  if (!factor) fail(ErrorKind::kUsage, "{}/config.json: rope_scaling has no factor", model.path());
  out.push_back({prefix + "type", GgufValue::string(type)});
  out.push_back({prefix + "factor", GgufValue::f32(*factor)});
  if (type == "linear") return;
  const auto original = number("original_max_position_embeddings");
  if (!original) fail(ErrorKind::kUsage, "{}/config.json: yarn rope_scaling has no original_max_position_embeddings", model.path());
  out.push_back({prefix + "original_context_length", GgufValue::u32(static_cast<uint32_t>(*original))});
  const std::pair<const char*, const char*> optional[] = {{"extrapolation_factor", "yarn_ext_factor"},
                                                          {"attention_factor", "yarn_attn_factor"},
                                                          {"beta_fast", "yarn_beta_fast"},
                                                          {"beta_slow", "yarn_beta_slow"}};
  for (const auto& [field, key] : optional) {
    if (const auto v = number(field)) out.push_back({prefix + key, GgufValue::f32(*v)});
  }
}

void add_hyperparameters(const ModelFolder& model, const Architecture& arch, GgufMetadata& out) {
  const ModelConfig& c = *model.config();
  const json config = read_optional_json(fs::path(model.path()) / "config.json");
  const std::string a(arch.gguf);
  const auto u32 = [&](const std::string& key, const std::optional<uint64_t>& value, const char* field) {
    out.push_back({a + key, GgufValue::u32(as_u32(required(value, model, field), model, field))});
  };
  u32(".block_count", c.num_hidden_layers, "num_hidden_layers");
  u32(".context_length", c.max_position_embeddings, "max_position_embeddings");
  u32(".embedding_length", c.hidden_size, "hidden_size");
  u32(".feed_forward_length", c.intermediate_size, "intermediate_size");
  u32(".attention.head_count", c.num_attention_heads, "num_attention_heads");
  u32(".attention.head_count_kv", c.num_key_value_heads, "num_key_value_heads");
  if (c.rope_theta) out.push_back({a + ".rope.freq_base", GgufValue::f32(static_cast<float>(*c.rope_theta))});
  if (!c.rms_norm_eps) fail(ErrorKind::kUsage, "{}/config.json: field \"rms_norm_eps\" is missing; llama.cpp needs it", model.path());
  out.push_back({a + ".attention.layer_norm_rms_epsilon", GgufValue::f32(static_cast<float>(*c.rms_norm_eps))});
  if (config.contains("head_dim") && !config["head_dim"].is_null()) {
    u32(".attention.key_length", c.head_dim, "head_dim");
    u32(".attention.value_length", c.head_dim, "head_dim");
  }
  if (arch.gguf == "llama") {
    out.push_back({a + ".vocab_size", GgufValue::u32(as_u32(embedding_rows(model), model, "vocab_size"))});
    u32(".rope.dimension_count", c.head_dim, "head_dim");
  }
  add_rope_scaling(model, config, a, out);
}

uint32_t llama_ftype(GgufFileType type) {
  switch (type) {
    case GgufFileType::kF32: return 0;
    case GgufFileType::kF16: return 1;
    case GgufFileType::kQ8_0: return 7;
    case GgufFileType::kQ4_K_M: return 15;
    case GgufFileType::kBF16: return 32;
  }
  return 0;
}

}  // namespace

std::optional<GgufFileType> parse_gguf_file_type(std::string_view text) {
  std::string lower;
  for (char ch : text) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (lower == "f32") return GgufFileType::kF32;
  if (lower == "f16") return GgufFileType::kF16;
  if (lower == "bf16") return GgufFileType::kBF16;
  if (lower == "q8_0") return GgufFileType::kQ8_0;
  if (lower == "q4_k_m") return GgufFileType::kQ4_K_M;
  return std::nullopt;
}

std::string_view gguf_file_type_name(GgufFileType type) {
  switch (type) {
    case GgufFileType::kF32: return "F32";
    case GgufFileType::kF16: return "F16";
    case GgufFileType::kBF16: return "BF16";
    case GgufFileType::kQ8_0: return "Q8_0";
    case GgufFileType::kQ4_K_M: return "Q4_K_M";
  }
  return "?";
}

std::vector<GgufTensorChoice> gguf_tensors(const ModelFolder& model, GgufFileType type) {
  const Architecture& arch = architecture_of(model);
  const ModelConfig& config = *model.config();
  std::vector<GgufTensorChoice> out;
  for (const auto& t : model.tensors()) {
    if (t.name().ends_with(".rotary_emb.inv_freq")) continue;  // recomputed by llama.cpp, skipped by its converter too
    const auto name = gguf_tensor_name(t.name());
    if (!name) {
      fail(ErrorKind::kUsage, "{}: tensor \"{}\" has no llama.cpp name for {} (rvec knows the Qwen2 and Llama tensors)",
           model.path(), printable(t.name()), arch.gguf);
    }
    if (!is_arithmetic(t.info->dtype)) {
      fail(ErrorKind::kUsage, "{}: tensor \"{}\" is {}; rvec writes GGUF from BF16, F16 and F32 tensors", model.path(),
           t.name(), dtype_name(t.info->dtype));
    }
    GgufTensorChoice choice{t.name(), *name, DType::kF32, 0};
    const ModuleKind kind = module_kind(t.name());
    if (arch.interleave_qk && (kind == ModuleKind::kAttnQ || kind == ModuleKind::kAttnK)) {
      choice.interleave_heads = required(kind == ModuleKind::kAttnQ ? config.num_attention_heads : config.num_key_value_heads,
                                         model, kind == ModuleKind::kAttnQ ? "num_attention_heads" : "num_key_value_heads");
      const uint64_t rows = t.info->shape.empty() ? 1 : t.info->shape[0];
      if (rows % (2 * choice.interleave_heads) != 0) {
        fail(ErrorKind::kUsage, "{}: tensor \"{}\" has {} rows, not whole heads of even size for {} heads", model.path(),
             t.name(), rows, choice.interleave_heads);
      }
    }
    out.push_back(std::move(choice));
  }
  if (arch.gguf == "llama") {
    if (auto factors = llama3_rope_factors(model); !factors.empty()) {
      out.push_back({"", "rope_freqs.weight", DType::kF32, 0, std::move(factors)});
    }
  }
  std::sort(out.begin(), out.end(), gguf_order);
  TypeChooser chooser(type, out, required(config.num_hidden_layers, model, "num_hidden_layers"));
  for (auto& choice : out) {
    if (choice.generated.empty()) choice.dtype = chooser.choose(choice.name, model.find(choice.source)->info->shape);
  }
  return out;
}

std::vector<float> llama3_rope_factors(const ModelFolder& model) {
  const json config = read_optional_json(fs::path(model.path()) / "config.json");
  const json rope = rope_scaling_of(config);
  if (rope.is_null() || rope_type_of(rope) != "llama3") return {};
  const auto number = [&](const char* field, double fallback) {
    return config_number(model, rope, "rope_scaling.", field).value_or(fallback);
  };
  const ModelConfig& c = *model.config();
  const auto base = static_cast<float>(c.rope_theta.value_or(10000.0));
  const uint64_t dim = required(c.head_dim, model, "head_dim");
  const auto factor = static_cast<float>(number("factor", 8.0));
  const auto low_freq_factor = static_cast<float>(number("low_freq_factor", 1.0));
  const auto high_freq_factor = static_cast<float>(number("high_freq_factor", 4.0));
  const auto old_context = static_cast<float>(number(
      "original_max_position_embeddings",
      config_number(model, config, "", "original_max_position_embeddings").value_or(8192)));
  if (!(high_freq_factor > low_freq_factor)) {
    fail(ErrorKind::kUsage, "{}/config.json: rope_scaling.high_freq_factor must exceed low_freq_factor", model.path());
  }
  const float low_freq_wavelen = old_context / low_freq_factor, high_freq_wavelen = old_context / high_freq_factor;
  std::vector<float> factors;
  for (uint64_t j = 0; j < dim; j += 2) {
    const float freq = 1.0f / std::pow(base, static_cast<float>(j) / static_cast<float>(dim));
    const float wavelen = static_cast<float>(2 * std::numbers::pi) / freq;
    if (wavelen < high_freq_wavelen) {
      factors.push_back(1.0f);
    } else if (wavelen > low_freq_wavelen) {
      factors.push_back(factor);
    } else {
      const float smooth = (old_context / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
      factors.push_back(1.0f / ((1.0f - smooth) / factor + smooth));
    }
  }
  return factors;
}

uint64_t gguf_source_row(uint64_t row, uint64_t head_rows) {
  const uint64_t head = row / head_rows, within = row % head_rows;
  return head * head_rows + (within % 2) * (head_rows / 2) + within / 2;
}

GgufMetadata gguf_metadata(const ModelFolder& model, GgufFileType type, const GgufOrigin& origin) {
  const Architecture& arch = architecture_of(model);
  GgufMetadata out;
  out.push_back({"general.architecture", GgufValue::string(std::string(arch.gguf))});
  out.push_back({"general.type", GgufValue::string("model")});
  out.push_back({"general.name", GgufValue::string(origin.name)});
  for (const auto& [key, value] : origin.provenance) out.push_back({"general." + key, GgufValue::string(value)});
  out.push_back({"general.file_type", GgufValue::u32(llama_ftype(type))});
  out.push_back({"general.quantization_version", GgufValue::u32(2)});
  out.push_back({"general.alignment", GgufValue::u32(static_cast<uint32_t>(kGgufAlignment))});
  add_hyperparameters(model, arch, out);
  add_tokenizer(model, out);
  return out;
}

std::string gguf_model_name(const std::string& path) {
  fs::path p = fs::absolute(path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return fs::is_directory(p) || p.extension() != ".safetensors" ? p.filename().string() : p.stem().string();
}

Metadata gguf_provenance_of(const ModelFolder& model) {
  Metadata out;
  for (const auto& [key, value] : model.shards().front()->header().metadata) {
    if (key.starts_with("rvec.")) out[key] = value;
  }
  if (!model.is_folder()) return out;
  const json provenance = read_optional_json(fs::path(model.path()) / "rvec_provenance.json");
  if (!provenance.is_object() || !provenance.contains("inputs") || !provenance["inputs"].is_object()) return out;
  // {"pre": {"path": ...}, ...}; several vectors as "vectors": [{"pre": ..., "post": ...}, ...] (roles pre_1, post_1, ...).
  const auto record = [&out](const json& inputs, const std::string& suffix) {
    for (const auto& [role, input] : inputs.items()) {
      if (input.is_object() && input.contains("path") && input["path"].is_string()) {
        out["rvec.inputs." + role + suffix] = gguf_model_name(input["path"].get<std::string>());
      }
    }
  };
  const json& inputs = provenance["inputs"];
  record(inputs, "");
  if (inputs.contains("vectors") && inputs["vectors"].is_array()) {
    for (size_t i = 0; i < inputs["vectors"].size(); ++i) {
      if (inputs["vectors"][i].is_object()) record(inputs["vectors"][i], "_" + std::to_string(i + 1));
    }
  }
  return out;
}

}  // namespace rvec
