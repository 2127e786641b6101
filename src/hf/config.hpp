// config.json of a Hugging Face decoder-only model (Qwen2, Llama and kin).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace rvec {

struct ModelConfig {
  std::vector<std::string> architectures;  // e.g. {"Qwen2ForCausalLM"}
  std::string model_type;                  // e.g. "qwen2"
  std::optional<uint64_t> hidden_size;
  std::optional<uint64_t> num_hidden_layers;
  std::optional<uint64_t> num_attention_heads;
  std::optional<uint64_t> num_key_value_heads;  // defaults to num_attention_heads
  std::optional<uint64_t> head_dim;             // defaults to hidden_size / heads
  std::optional<uint64_t> intermediate_size;
  std::optional<uint64_t> vocab_size;
  std::optional<bool> tie_word_embeddings;
  std::string torch_dtype;  // "bfloat16", ... ("dtype" in newer transformers)
  std::optional<double> rope_theta;
  std::optional<double> rms_norm_eps;
  std::optional<uint64_t> max_position_embeddings;

  std::string architecture() const;  // first of architectures, else model_type
};

// Parses config.json text; a field with the wrong type is an error naming it.
ModelConfig parse_model_config(const nlohmann::json& json, const std::string& origin);
ModelConfig read_model_config(const std::string& path);

}  // namespace rvec
