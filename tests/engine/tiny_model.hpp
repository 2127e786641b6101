// Random tiny Qwen2/Llama checkpoints for engine tests, plus an independent
// reference forward pass in f64 written from the Hugging Face equations (it
// shares no code with the engine).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace rvec::test {

struct TinyModelSpec {
  size_t hidden = 32, layers = 2, heads = 4, kv_heads = 2, intermediate = 48, vocab = 96;
  bool qkv_bias = true;
  bool tied = false;
  bool bf16 = false;
  bool o_proj_bias = false;  // Llama's attention_bias, which the engine does not implement (not in the reference)
  double rope_theta = 10000.0;
  double rms_eps = 1e-6;
  uint64_t seed = 1;
};

struct TinyModel {
  TinyModelSpec spec;
  std::map<std::string, std::vector<double>> tensors;  // values as stored (bf16-rounded when bf16)
};

// Writes config.json and model.safetensors into `folder` and returns the weights.
TinyModel write_tiny_model(const std::filesystem::path& folder, const TinyModelSpec& spec);

// Overwrites the F32 embedding row of `token` in folder/model.safetensors with
// NaN: a broken model whose logits are non-finite for exactly the sequences
// that contain `token`.
void poison_embedding_row(const std::filesystem::path& folder, size_t token);

// Logits [tokens.size(), vocab] of a full causal forward pass over `tokens`.
std::vector<std::vector<double>> reference_logits(const TinyModel& model, const std::vector<int>& tokens);

}  // namespace rvec::test
