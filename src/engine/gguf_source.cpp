// ModelSource for a GGUF file: hyperparameters from the {arch}.* keys,
// tensors by llama.cpp's names (the tensor-name table maps the engine's
// Hugging Face names), Llama's q/k rows put back in Hugging Face order, the
// tokenizer and chat template from the tokenizer.* keys.
#include "engine/gguf_source.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <type_traits>
#include <variant>

#include "base/error.hpp"
#include "base/regular_file.hpp"
#include "base/text.hpp"
#include "engine/model_source.hpp"
#include "hf/gguf_export.hpp"
#include "hf/tensor_names.hpp"
#include "io/gguf.hpp"
#include "numeric/convert.hpp"
#include "numeric/quant.hpp"
#include "text/gguf_tokenizer.hpp"

namespace rvec {
namespace {

// The architectures the engine runs, by general.architecture.
struct GgufArchitecture {
  std::string_view gguf, hf;
  bool interleaved_qk;  // q/k rows stored in llama.cpp's RoPE order
};
constexpr GgufArchitecture kArchitectures[] = {
    {"qwen2", "Qwen2ForCausalLM", false},
    {"llama", "LlamaForCausalLM", true},
};

// Reads the file's keys, each checked for its type, naming the file and key.
class Keys {
 public:
  Keys(const GgufMetadata& metadata, const std::string& origin) : metadata_(metadata), origin_(origin) {}

  const GgufValue* find(std::string_view key) const { return find_key(metadata_, key); }

  std::optional<std::string> string(std::string_view key) const {
    const GgufValue* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (v->is_array() || v->type != GgufValueType::kString) bad_input("{}: key {} must be a string", origin_, key);
    return std::get<std::string>(v->items.front());
  }

  std::optional<uint64_t> unsigned_integer(std::string_view key) const {
    const GgufValue* v = find(key);
    if (v == nullptr) return std::nullopt;
    std::optional<uint64_t> out;
    if (!v->is_array()) {
      std::visit(
          [&](const auto& x) {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
              if (x >= 0) out = static_cast<uint64_t>(x);
            }
          },
          v->items.front());
    }
    if (!out) bad_input("{}: key {} must be a non-negative integer, found {}", origin_, key, printable(v->describe()));
    return out;
  }

  std::optional<double> number(std::string_view key) const {
    const GgufValue* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (v->is_array() || (v->type != GgufValueType::kF32 && v->type != GgufValueType::kF64)) {
      bad_input("{}: key {} must be a float32 or float64, found {}", origin_, key, printable(v->describe()));
    }
    const auto& item = v->items.front();
    return std::holds_alternative<float>(item) ? std::get<float>(item) : std::get<double>(item);
  }

  size_t required_size(std::string_view key) const {
    const auto v = unsigned_integer(key);
    if (!v || *v == 0) bad_input("{}: key {} is missing or zero", origin_, key);
    if (*v > std::numeric_limits<int32_t>::max()) bad_input("{}: key {} = {} is too large", origin_, key, *v);
    return static_cast<size_t>(*v);
  }

  // A positive, finite number that stays so in f32 (the engine's arithmetic).
  float positive_float(std::string_view key, std::optional<double> fallback) const {
    const auto value = number(key);
    if (!value && !fallback) bad_input("{}: key {} is missing", origin_, key);
    const double v = value.value_or(fallback.value_or(0));
    if (!(v > 0) || !std::isfinite(v) || v > FLT_MAX || static_cast<float>(v) == 0.0f) {
      bad_input("{}: {} is {}; the engine needs a finite number above 0 (in float32)", origin_, key, v);
    }
    return static_cast<float>(v);
  }

 private:
  const GgufMetadata& metadata_;
  const std::string& origin_;
};

const GgufArchitecture& architecture_of(const Keys& keys, const std::string& file) {
  const auto name = keys.string("general.architecture");
  if (!name) bad_input("{}: key general.architecture is missing", file);
  for (const auto& a : kArchitectures) {
    if (a.gguf == *name) return a;
  }
  bad_input("{}: general.architecture \"{}\" is not supported by the built-in engine (qwen2 and llama are)", file,
            printable(*name));
}

// What the engine does not implement is refused rather than run as something else.
void check_supported(const Keys& keys, const std::string& arch, const std::string& file) {
  if (const auto split = keys.unsigned_integer("split.count"); split && *split > 1) {
    bad_input("{}: one part of a model split into {} files; the built-in engine runs single GGUF files "
              "(join them with llama.cpp's gguf-split --merge)", file, *split);
  }
  if (const auto type = keys.string(arch + ".rope.scaling.type"); type && *type != "none") {
    bad_input("{}: {}.rope.scaling.type is \"{}\"; the built-in engine implements only default RoPE", file, arch,
              printable(*type));
  }
  for (const std::string& key : {arch + ".expert_count", arch + ".attention.sliding_window"}) {
    if (const auto v = keys.unsigned_integer(key); v && *v > 0) {
      bad_input("{}: {} is {}; the built-in engine has no {}", file, key, *v,
                key.ends_with("expert_count") ? "mixture of experts" : "sliding-window attention");
    }
  }
}

void check_sizes(const TransformerConfig& t, const std::string& arch, const std::string& file) {
  if (t.heads % t.kv_heads != 0) {
    bad_input("{}: {}.attention.head_count {} is not a multiple of head_count_kv {}", file, arch, t.heads, t.kv_heads);
  }
  if (t.head_dim == 0 || t.head_dim % 2 != 0) {
    bad_input("{}: the head size is {}; RoPE needs an even number above 0", file, t.head_dim);
  }
}

// Special ids past the embedding can never be produced; they are left out.
std::optional<TokenId> token_key(const Keys& keys, std::string_view key, size_t vocab) {
  const auto id = keys.unsigned_integer(key);
  if (!id || *id >= vocab) return std::nullopt;
  return static_cast<TokenId>(*id);
}

TransformerConfig read_config(const Keys& keys, const GgufArchitecture& a, const GgufTensorInfo* embedding,
                              bool has_output, const std::string& file) {
  const std::string arch(a.gguf);
  const auto key = [&](std::string_view suffix) { return arch + "." + std::string(suffix); };
  check_supported(keys, arch, file);
  TransformerConfig t;
  t.architecture = std::string(a.hf);
  t.layers = keys.required_size(key("block_count"));
  t.hidden = keys.required_size(key("embedding_length"));
  t.intermediate = keys.required_size(key("feed_forward_length"));
  t.heads = keys.required_size(key("attention.head_count"));
  t.kv_heads = keys.find(key("attention.head_count_kv")) ? keys.required_size(key("attention.head_count_kv")) : t.heads;
  t.head_dim = keys.find(key("attention.key_length")) ? keys.required_size(key("attention.key_length")) : t.hidden / t.heads;
  for (const char* same : {"attention.value_length", "rope.dimension_count"}) {
    if (const auto v = keys.unsigned_integer(key(same)); v && *v != t.head_dim) {
      bad_input("{}: {} is {} but the head size is {}; the built-in engine needs them equal", file, key(same), *v,
                t.head_dim);
    }
  }
  t.max_positions = keys.required_size(key("context_length"));
  t.rms_eps = keys.positive_float(key("attention.layer_norm_rms_epsilon"), std::nullopt);
  t.rope_theta = keys.positive_float(key("rope.freq_base"), 10000.0);
  check_sizes(t, arch, file);
  if (embedding == nullptr) bad_input("{}: tensor token_embd.weight is missing", file);
  if (embedding->ne.size() != 2) bad_input("{}: tensor token_embd.weight is not 2-D", file);
  t.vocab = embedding->ne[1];
  if (t.vocab == 0 || t.vocab > static_cast<size_t>(std::numeric_limits<TokenId>::max())) {
    bad_input("{}: token_embd.weight has {} rows; the engine's token ids reach 2^31 - 1", file, t.vocab);
  }
  if (const auto v = keys.unsigned_integer(key("vocab_size")); v && *v != t.vocab) {
    bad_input("{}: {} is {} but token_embd.weight has {} rows", file, key("vocab_size"), *v, t.vocab);
  }
  t.tied_head = !has_output;
  for (const char* name : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"}) {
    const auto id = token_key(keys, name, t.vocab);
    if (id && std::find(t.eos_ids.begin(), t.eos_ids.end(), *id) == t.eos_ids.end()) t.eos_ids.push_back(*id);
  }
  t.bos_id = token_key(keys, "tokenizer.ggml.bos_token_id", t.vocab);
  return t;
}

// How a ggml type reaches the engine: as stored, or widened to f32.
struct Decoded {
  WeightEncoding encoding;
  std::vector<std::byte> bytes;
};

Decoded widened(size_t elements, const std::function<void(std::span<float>)>& fill) {
  std::vector<float> values(elements);
  fill(values);
  Decoded out{WeightEncoding::kF32, std::vector<std::byte>(elements * 4)};
  std::memcpy(out.bytes.data(), values.data(), out.bytes.size());
  return out;
}

// Bytes of one tensor as the engine runs them; nullopt for ggml types it does not.
std::optional<Decoded> decode(uint32_t ggml_type, std::vector<std::byte> raw, size_t elements) {
  const std::byte* in = raw.data();
  switch (ggml_type) {
    case 0: return Decoded{WeightEncoding::kF32, std::move(raw)};
    case 30: return Decoded{WeightEncoding::kBF16, std::move(raw)};
    case 8: return Decoded{WeightEncoding::kQ8_0, std::move(raw)};
    case 1:
      return widened(elements, [&](std::span<float> out) {
        for (size_t i = 0; i < out.size(); ++i) {
          uint16_t bits;
          std::memcpy(&bits, in + 2 * i, 2);
          out[i] = f16_to_f32(bits);
        }
      });
    case 6: return widened(elements, [&](std::span<float> out) { quant::dequantize_q5_0(in, out); });
    case 12: return widened(elements, [&](std::span<float> out) { quant::dequantize_q4_k(in, out); });
    case 14: return widened(elements, [&](std::span<float> out) { quant::dequantize_q6_k(in, out); });
    default: return std::nullopt;
  }
}

class GgufSource final : public ModelSource {
 public:
  explicit GgufSource(const std::string& file)
      : file_(file), gguf_(read_gguf_file(file)), fd_(open_regular_file(file)), keys_(gguf_.metadata, file_) {
    for (const auto& t : gguf_.tensors) by_name_.emplace(t.name, &t);
    const GgufArchitecture& arch = architecture_of(keys_, file_);
    interleaved_qk_ = arch.interleaved_qk;
    if (by_name_.contains("rope_freqs.weight")) {
      bad_input("{}: tensor rope_freqs.weight (Llama 3 RoPE scaling) is not supported by the built-in engine "
                "(only default RoPE)", file_);
    }
    const auto embedding = by_name_.find("token_embd.weight");
    config_ = read_config(keys_, arch, embedding == by_name_.end() ? nullptr : embedding->second,
                          by_name_.contains("output.weight"), file_);
  }

  const std::string& path() const override { return file_; }
  const TransformerConfig& config() const override { return config_; }

  bool has(const std::string& name) const override {
    const auto gguf = gguf_tensor_name(name);
    return gguf && by_name_.contains(*gguf);
  }

  std::vector<float> vector(const std::string& name, size_t size) const override {
    WeightMatrix one;
    const Decoded d = read(name, {size});
    one.append_rows(d.encoding, d.bytes, 1, size);
    std::vector<float> out(size);
    one.row_f32(0, out.data());
    return out;
  }

  void append_rows(WeightMatrix& w, const std::string& name, size_t rows, size_t cols) const override {
    const Decoded d = read(name, {rows, cols});
    w.append_rows(d.encoding, d.bytes, rows, cols);
  }

  void check_every_tensor_read() const override {
    for (const auto& t : gguf_.tensors) {
      if (read_.contains(t.name)) continue;
      bad_input("{}: tensor {} is not used by the built-in engine's {} as the file's metadata describes it; refusing "
                "to run without it",
                file_, printable(t.name), config_.architecture);
    }
  }

  std::shared_ptr<const Tokenizer> tokenizer(std::string& absence) const override {
    return tokenizer_from_gguf(gguf_.metadata, file_, absence);
  }

  ChatTemplate chat_template() const override {
    const auto jinja = keys_.string("tokenizer.chat_template");
    if (!jinja) bad_input("{}: no tokenizer.chat_template key, so no chat template", file_);
    return ChatTemplate::from_jinja(*jinja, file_ + ": tokenizer.chat_template");
  }

 private:
  // The tensor of Hugging Face name `name`, checked against `shape` (HF order)
  // and decoded; Llama's q/k rows put back in Hugging Face order.
  Decoded read(const std::string& name, const std::vector<uint64_t>& shape) const {
    const auto gguf_name = gguf_tensor_name(name);
    const auto it = gguf_name ? by_name_.find(*gguf_name) : by_name_.end();
    if (it == by_name_.end()) bad_input("{}: tensor {} is missing", file_, gguf_name.value_or(name));
    const GgufTensorInfo& t = *it->second;
    read_.insert(t.name);
    const std::vector<uint64_t> hf_shape(t.ne.rbegin(), t.ne.rend());
    if (hf_shape != shape) {
      bad_input("{}: tensor {} has shape {} (rows first), the metadata implies {}", file_, t.name,
                shape_string(hf_shape), shape_string(shape));
    }
    uint64_t elements = 1;
    for (const uint64_t d : shape) elements *= d;
    auto decoded = decode(t.type, read_bytes(t), elements);
    if (!decoded) {
      const GgmlType* type = find_ggml_type(t.type);
      bad_input("{}: tensor {} is {}; the built-in engine runs F32, F16, BF16 and Q8_0 tensors (and widens Q5_0, "
                "Q4_K and Q6_K to f32)", file_, t.name, type ? type->name : "an unknown type");
    }
    const ModuleKind kind = module_kind(name);
    if (interleaved_qk_ && (kind == ModuleKind::kAttnQ || kind == ModuleKind::kAttnK)) {
      const size_t rows = shape.front(), row_bytes = decoded->bytes.size() / rows;
      decoded->bytes = rows_in_hf_order(decoded->bytes, row_bytes, config_.head_dim);
    }
    return std::move(*decoded);
  }

  std::vector<std::byte> read_bytes(const GgufTensorInfo& t) const {
    std::vector<std::byte> out(t.bytes);
    read_exactly_at(fd_.get(), out, gguf_.data_start + t.offset, file_);
    return out;
  }

  std::string file_;
  GgufFile gguf_;
  FileDescriptor fd_;
  Keys keys_;
  std::map<std::string, const GgufTensorInfo*, std::less<>> by_name_;
  bool interleaved_qk_ = false;
  TransformerConfig config_;
  mutable std::set<std::string> read_;  // GGUF names of the tensors handed out
};

}  // namespace

std::vector<std::byte> rows_in_hf_order(std::span<const std::byte> gguf_rows, size_t row_bytes, size_t head_rows) {
  std::vector<std::byte> out(gguf_rows.size());
  const size_t rows = gguf_rows.size() / row_bytes;
  for (size_t r = 0; r < rows; ++r) {
    std::memcpy(out.data() + gguf_source_row(r, head_rows) * row_bytes, gguf_rows.data() + r * row_bytes, row_bytes);
  }
  return out;
}

std::unique_ptr<ModelSource> open_gguf_source(const std::string& file) { return std::make_unique<GgufSource>(file); }

}  // namespace rvec
