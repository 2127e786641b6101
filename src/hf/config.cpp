#include "hf/config.hpp"

#include <cmath>

#include "base/error.hpp"
#include "base/json.hpp"

namespace rvec {
namespace {

using nlohmann::json;

const json* field(const json& object, const char* name) {
  const auto it = object.find(name);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<uint64_t> read_count(const json& object, const char* name, const std::string& origin) {
  const json* value = field(object, name);
  if (value == nullptr) return std::nullopt;
  if (!value->is_number_unsigned()) {
    bad_input("{}: field \"{}\" must be a non-negative integer, found {}", origin, name, value->dump());
  }
  return value->get<uint64_t>();
}

std::optional<double> read_number(const json& object, const char* name, const std::string& origin) {
  const json* value = field(object, name);
  if (value == nullptr) return std::nullopt;
  if (!value->is_number()) bad_input("{}: field \"{}\" must be a number, found {}", origin, name, value->dump());
  return value->get<double>();
}

std::string read_string(const json& object, const char* name, const std::string& origin) {
  const json* value = field(object, name);
  if (value == nullptr) return {};
  if (!value->is_string()) bad_input("{}: field \"{}\" must be a string, found {}", origin, name, value->dump());
  return value->get<std::string>();
}

}  // namespace

std::string ModelConfig::architecture() const {
  return architectures.empty() ? model_type : architectures.front();
}

ModelConfig parse_model_config(const json& root, const std::string& origin) {
  if (!root.is_object()) bad_input("{}: must hold a JSON object", origin);
  ModelConfig c;
  if (const json* archs = field(root, "architectures")) {
    if (!archs->is_array()) bad_input("{}: field \"architectures\" must be a list of strings", origin);
    for (const auto& a : *archs) {
      if (!a.is_string()) bad_input("{}: field \"architectures\" must be a list of strings", origin);
      c.architectures.push_back(a.get<std::string>());
    }
  }
  c.model_type = read_string(root, "model_type", origin);
  c.hidden_size = read_count(root, "hidden_size", origin);
  c.num_hidden_layers = read_count(root, "num_hidden_layers", origin);
  c.num_attention_heads = read_count(root, "num_attention_heads", origin);
  c.num_key_value_heads = read_count(root, "num_key_value_heads", origin);
  c.head_dim = read_count(root, "head_dim", origin);
  c.intermediate_size = read_count(root, "intermediate_size", origin);
  c.vocab_size = read_count(root, "vocab_size", origin);
  c.max_position_embeddings = read_count(root, "max_position_embeddings", origin);
  if (const json* tie = field(root, "tie_word_embeddings")) {
    if (!tie->is_boolean()) bad_input("{}: field \"tie_word_embeddings\" must be true or false", origin);
    c.tie_word_embeddings = tie->get<bool>();
  }
  c.torch_dtype = read_string(root, "torch_dtype", origin);
  if (c.torch_dtype.empty()) c.torch_dtype = read_string(root, "dtype", origin);
  c.rms_norm_eps = read_number(root, "rms_norm_eps", origin);
  c.rope_theta = read_number(root, "rope_theta", origin);
  for (const char* nested : {"rope_parameters", "rope_scaling"}) {
    if (c.rope_theta) break;
    if (const json* rope = field(root, nested); rope != nullptr && rope->is_object()) {
      c.rope_theta = read_number(*rope, "rope_theta", origin);
    }
  }
  if (!c.num_key_value_heads) c.num_key_value_heads = c.num_attention_heads;
  if (c.num_attention_heads == uint64_t{0}) bad_input("{}: field \"num_attention_heads\" is 0", origin);
  if (!c.head_dim && c.hidden_size && c.num_attention_heads) {
    c.head_dim = *c.hidden_size / *c.num_attention_heads;
  }
  return c;
}

ModelConfig read_model_config(const std::string& path) {
  return parse_model_config(read_json_file(path, 16'000'000), path);
}

}  // namespace rvec
