#include "hf/shapes.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "base/error.hpp"
#include "hf/tensor_names.hpp"

namespace rvec {
namespace {

const std::vector<Qwen2Shape>& all_shapes() {
  // Sizes from the Qwen2.5 config.json files.
  static const std::vector<Qwen2Shape> kShapes = {
      {"tiny", 64, 176, 2, 4, 2, 16, 512, 500, false, 1e6},
      {"0.5b", 896, 4864, 24, 14, 2, 64, 151936, 151665, true, 1e6},
      {"1.5b", 1536, 8960, 28, 12, 2, 128, 151936, 151665, true, 1e6},
      {"7b", 3584, 18944, 28, 28, 4, 128, 152064, 151665, false, 1e6},
      {"32b", 5120, 27648, 64, 40, 8, 128, 152064, 151665, false, 1e6},
  };
  return kShapes;
}

}  // namespace

std::vector<std::string> qwen2_shape_names() {
  std::vector<std::string> names;
  for (const auto& s : all_shapes()) names.push_back(s.name);
  return names;
}

Qwen2Shape qwen2_shape(const std::string& name) {
  for (const auto& s : all_shapes()) {
    if (s.name == name) return s;
  }
  fail(ErrorKind::kUsage, "unknown model shape \"{}\" (known: {})", name, fmt::join(qwen2_shape_names(), ", "));
}

std::vector<TensorSpec> qwen2_tensors(const Qwen2Shape& s, DType dtype) {
  const auto size = [&](Dim d) -> uint64_t {
    switch (d) {
      case Dim::kHidden: return s.hidden;
      case Dim::kQ: return s.heads * s.head_dim;
      case Dim::kKv: return s.kv_heads * s.head_dim;
      case Dim::kIntermediate: return s.intermediate;
      case Dim::kNone: break;
    }
    return 0;
  };
  std::vector<TensorSpec> out;
  out.push_back({std::string(kEmbedName), dtype, {s.vocab_rows, s.hidden}});
  for (uint64_t i = 0; i < s.layers; ++i) {
    for (const LayerTensorName& t : kLayerTensors) {
      std::vector<uint64_t> shape = {size(t.rows)};
      if (t.cols != Dim::kNone) shape.push_back(size(t.cols));
      out.push_back({layer_tensor_name(i, t.suffix), dtype, std::move(shape)});
    }
  }
  out.push_back({std::string(kFinalNormName), dtype, {s.hidden}});
  if (!s.tied) out.push_back({std::string(kLmHeadName), dtype, {s.vocab_rows, s.hidden}});
  return out;
}

nlohmann::json qwen2_config(const Qwen2Shape& s, DType dtype) {
  return {
      {"architectures", {"Qwen2ForCausalLM"}},
      {"attention_dropout", 0.0},
      {"bos_token_id", 151643},
      {"eos_token_id", 151645},
      {"hidden_act", "silu"},
      {"hidden_size", s.hidden},
      {"initializer_range", 0.02},
      {"intermediate_size", s.intermediate},
      {"max_position_embeddings", 32768},
      {"max_window_layers", s.layers},
      {"model_type", "qwen2"},
      {"num_attention_heads", s.heads},
      {"num_hidden_layers", s.layers},
      {"num_key_value_heads", s.kv_heads},
      {"head_dim", s.head_dim},
      {"rms_norm_eps", 1e-6},
      {"rope_theta", s.rope_theta},
      {"sliding_window", 32768},
      {"tie_word_embeddings", s.tied},
      {"torch_dtype", torch_dtype_name(dtype)},
      {"transformers_version", "4.46.0"},
      {"use_cache", true},
      {"use_sliding_window", false},
      {"vocab_size", s.vocab_rows},
  };
}

}  // namespace rvec
