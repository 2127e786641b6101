// Qwen2-architecture model shapes (the real Qwen2.5 sizes plus a tiny one)
// and their tensor lists, for generated test families and benches.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/writer.hpp"

namespace rvec {

struct Qwen2Shape {
  std::string name;
  uint64_t hidden = 0;
  uint64_t intermediate = 0;
  uint64_t layers = 0;
  uint64_t heads = 0;
  uint64_t kv_heads = 0;
  uint64_t head_dim = 0;
  uint64_t vocab_rows = 0;      // embedding rows
  uint64_t tokenizer_size = 0;  // ids the tokenizer defines (<= vocab_rows)
  bool tied = false;
  double rope_theta = 1e6;
};

// "tiny", "0.5b", "1.5b", "7b", "32b"; fails with the list of names otherwise.
Qwen2Shape qwen2_shape(const std::string& name);
std::vector<std::string> qwen2_shape_names();

// Tensors in Hugging Face state-dict order.
std::vector<TensorSpec> qwen2_tensors(const Qwen2Shape& shape, DType dtype);

// config.json for the shape.
nlohmann::json qwen2_config(const Qwen2Shape& shape, DType dtype);

}  // namespace rvec
