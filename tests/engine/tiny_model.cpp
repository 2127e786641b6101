#include "engine/tiny_model.hpp"

#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "io/safetensors.hpp"
#include "io/writer.hpp"
#include "numeric/convert.hpp"

namespace rvec::test {
namespace {

using Matrix = std::vector<double>;

void add_tensor(TinyModel& m, std::mt19937_64& rng, const std::string& name, size_t rows, size_t cols, double mean,
                double scale) {
  std::normal_distribution<double> normal(mean, scale);
  std::vector<double> values(rows * cols);
  for (auto& v : values) {
    const float f = static_cast<float>(normal(rng));
    v = m.spec.bf16 ? bf16_to_f32(f32_to_bf16(f)) : f;
  }
  m.tensors[name] = std::move(values);
}

// y[r] = sum_c w[r, c] x[c]
std::vector<double> apply(const Matrix& w, const std::vector<double>& x, size_t rows) {
  const size_t cols = x.size();
  std::vector<double> y(rows, 0.0);
  for (size_t r = 0; r < rows; ++r) {
    for (size_t c = 0; c < cols; ++c) y[r] += w[r * cols + c] * x[c];
  }
  return y;
}

std::vector<double> rms_norm(const std::vector<double>& x, const Matrix& weight, double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double scale = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + eps);
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = x[i] * scale * weight[i];
  return out;
}

// HF rotate_half: out = x * cos + rotate_half(x) * sin, rotate_half(x) = [-x2, x1].
void rotate(std::vector<double>& v, size_t offset, size_t head_dim, size_t position, double theta) {
  const size_t half = head_dim / 2;
  for (size_t j = 0; j < half; ++j) {
    const double angle = static_cast<double>(position) * std::pow(theta, -2.0 * static_cast<double>(j) / head_dim);
    const double x1 = v[offset + j], x2 = v[offset + j + half];
    v[offset + j] = x1 * std::cos(angle) - x2 * std::sin(angle);
    v[offset + j + half] = x2 * std::cos(angle) + x1 * std::sin(angle);
  }
}

}  // namespace

TinyModel write_tiny_model(const std::filesystem::path& folder, const TinyModelSpec& s) {
  std::filesystem::create_directories(folder);
  TinyModel m{s, {}};
  std::mt19937_64 rng(s.seed);
  const size_t hd = s.hidden / s.heads;
  add_tensor(m, rng, "model.embed_tokens.weight", s.vocab, s.hidden, 0, 1.0);
  for (size_t l = 0; l < s.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add_tensor(m, rng, p + "input_layernorm.weight", 1, s.hidden, 1.0, 0.1);
    add_tensor(m, rng, p + "post_attention_layernorm.weight", 1, s.hidden, 1.0, 0.1);
    add_tensor(m, rng, p + "self_attn.q_proj.weight", s.heads * hd, s.hidden, 0, 0.3);
    add_tensor(m, rng, p + "self_attn.k_proj.weight", s.kv_heads * hd, s.hidden, 0, 0.3);
    add_tensor(m, rng, p + "self_attn.v_proj.weight", s.kv_heads * hd, s.hidden, 0, 0.3);
    if (s.qkv_bias) {
      add_tensor(m, rng, p + "self_attn.q_proj.bias", 1, s.heads * hd, 0, 0.5);
      add_tensor(m, rng, p + "self_attn.k_proj.bias", 1, s.kv_heads * hd, 0, 0.5);
      add_tensor(m, rng, p + "self_attn.v_proj.bias", 1, s.kv_heads * hd, 0, 0.5);
    }
    add_tensor(m, rng, p + "self_attn.o_proj.weight", s.hidden, s.heads * hd, 0, 0.2);
    if (s.o_proj_bias) add_tensor(m, rng, p + "self_attn.o_proj.bias", 1, s.hidden, 0, 0.5);
    add_tensor(m, rng, p + "mlp.gate_proj.weight", s.intermediate, s.hidden, 0, 0.2);
    add_tensor(m, rng, p + "mlp.up_proj.weight", s.intermediate, s.hidden, 0, 0.2);
    add_tensor(m, rng, p + "mlp.down_proj.weight", s.hidden, s.intermediate, 0, 0.2);
  }
  add_tensor(m, rng, "model.norm.weight", 1, s.hidden, 1.0, 0.1);
  if (!s.tied) add_tensor(m, rng, "lm_head.weight", s.vocab, s.hidden, 0, 0.3);

  std::vector<TensorSpec> specs;
  for (const auto& [name, values] : m.tensors) {
    const bool vector = name.find("norm") != std::string::npos || name.find("bias") != std::string::npos;
    std::vector<uint64_t> shape;
    if (vector) {
      shape = {values.size()};
    } else if (name.find("o_proj") != std::string::npos) {
      shape = {s.hidden, s.heads * hd};
    } else if (name.find("down_proj") != std::string::npos) {
      shape = {s.hidden, s.intermediate};
    } else {
      shape = {values.size() / s.hidden, s.hidden};
    }
    specs.push_back({name, s.bf16 ? DType::kBF16 : DType::kF32, shape});
  }
  SafetensorsWriter writer((folder / "model.safetensors").string(), specs, {{"format", "pt"}});
  for (const auto& spec : writer.order()) {
    const auto& values = m.tensors.at(spec.name);
    if (s.bf16) {
      std::vector<uint16_t> bits;
      for (double v : values) bits.push_back(f32_to_bf16(static_cast<float>(v)));
      writer.append(std::as_bytes(std::span(bits)));
    } else {
      std::vector<float> floats(values.begin(), values.end());
      writer.append(std::as_bytes(std::span(floats)));
    }
  }
  writer.finish();
  nlohmann::json config = {
      {"architectures", {s.qkv_bias ? "Qwen2ForCausalLM" : "LlamaForCausalLM"}},
      {"model_type", s.qkv_bias ? "qwen2" : "llama"},
      {"hidden_size", s.hidden},
      {"intermediate_size", s.intermediate},
      {"num_hidden_layers", s.layers},
      {"num_attention_heads", s.heads},
      {"num_key_value_heads", s.kv_heads},
      {"vocab_size", s.vocab},
      {"max_position_embeddings", 256},
      {"rms_norm_eps", s.rms_eps},
      {"rope_theta", s.rope_theta},
      {"tie_word_embeddings", s.tied},
      {"eos_token_id", 2},
      {"torch_dtype", s.bf16 ? "bfloat16" : "float32"},
  };
  std::ofstream(folder / "config.json") << config.dump(2);
  return m;
}

void poison_embedding_row(const std::filesystem::path& folder, size_t token) {
  const auto path = (folder / "model.safetensors").string();
  uint64_t offset = 0;
  size_t hidden = 0;
  {
    const auto file = SafetensorsFile::open(path);
    const TensorInfo* embed = file->header().find("model.embed_tokens.weight");
    if (embed == nullptr || embed->dtype != DType::kF32) throw std::runtime_error(path + ": no F32 embedding");
    hidden = embed->shape[1];
    offset = file->header().data_start() + embed->begin + token * hidden * sizeof(float);
  }
  const std::vector<float> nan_row(hidden, std::numeric_limits<float>::quiet_NaN());
  std::fstream out(path, std::ios::in | std::ios::out | std::ios::binary);
  out.seekp(static_cast<std::streamoff>(offset));
  out.write(reinterpret_cast<const char*>(nan_row.data()), static_cast<std::streamsize>(hidden * sizeof(float)));
  if (!out) throw std::runtime_error(path + ": cannot poison the embedding");
}

std::vector<std::vector<double>> reference_logits(const TinyModel& m, const std::vector<int>& tokens) {
  const auto& s = m.spec;
  const size_t hd = s.hidden / s.heads, group = s.heads / s.kv_heads;
  const auto& W = m.tensors;
  std::vector<std::vector<double>> x;
  for (int t : tokens) {
    const auto& embed = W.at("model.embed_tokens.weight");
    x.emplace_back(embed.begin() + t * s.hidden, embed.begin() + (t + 1) * s.hidden);
  }
  for (size_t l = 0; l < s.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    std::vector<std::vector<double>> q, k, v;
    for (size_t t = 0; t < x.size(); ++t) {
      const auto h = rms_norm(x[t], W.at(p + "input_layernorm.weight"), s.rms_eps);
      q.push_back(apply(W.at(p + "self_attn.q_proj.weight"), h, s.heads * hd));
      k.push_back(apply(W.at(p + "self_attn.k_proj.weight"), h, s.kv_heads * hd));
      v.push_back(apply(W.at(p + "self_attn.v_proj.weight"), h, s.kv_heads * hd));
      if (s.qkv_bias) {
        for (size_t i = 0; i < q[t].size(); ++i) q[t][i] += W.at(p + "self_attn.q_proj.bias")[i];
        for (size_t i = 0; i < k[t].size(); ++i) k[t][i] += W.at(p + "self_attn.k_proj.bias")[i];
        for (size_t i = 0; i < v[t].size(); ++i) v[t][i] += W.at(p + "self_attn.v_proj.bias")[i];
      }
      for (size_t h2 = 0; h2 < s.heads; ++h2) rotate(q[t], h2 * hd, hd, t, s.rope_theta);
      for (size_t h2 = 0; h2 < s.kv_heads; ++h2) rotate(k[t], h2 * hd, hd, t, s.rope_theta);
    }
    for (size_t t = 0; t < x.size(); ++t) {
      std::vector<double> att(s.heads * hd, 0.0);
      for (size_t head = 0; head < s.heads; ++head) {
        const size_t kvh = head / group;
        std::vector<double> w(t + 1);
        double max_w = -1e300, sum = 0;
        for (size_t j = 0; j <= t; ++j) {
          double dot = 0;
          for (size_t i = 0; i < hd; ++i) dot += q[t][head * hd + i] * k[j][kvh * hd + i];
          w[j] = dot / std::sqrt(static_cast<double>(hd));
          max_w = std::max(max_w, w[j]);
        }
        for (auto& e : w) sum += e = std::exp(e - max_w);
        for (size_t j = 0; j <= t; ++j) {
          for (size_t i = 0; i < hd; ++i) att[head * hd + i] += w[j] / sum * v[j][kvh * hd + i];
        }
      }
      const auto o = apply(W.at(p + "self_attn.o_proj.weight"), att, s.hidden);
      for (size_t i = 0; i < s.hidden; ++i) x[t][i] += o[i];
      const auto h = rms_norm(x[t], W.at(p + "post_attention_layernorm.weight"), s.rms_eps);
      const auto gate = apply(W.at(p + "mlp.gate_proj.weight"), h, s.intermediate);
      const auto up = apply(W.at(p + "mlp.up_proj.weight"), h, s.intermediate);
      std::vector<double> act(s.intermediate);
      for (size_t i = 0; i < s.intermediate; ++i) act[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
      const auto down = apply(W.at(p + "mlp.down_proj.weight"), act, s.hidden);
      for (size_t i = 0; i < s.hidden; ++i) x[t][i] += down[i];
    }
  }
  std::vector<std::vector<double>> logits;
  const auto& head = W.at(s.tied ? "model.embed_tokens.weight" : "lm_head.weight");
  for (const auto& row : x) logits.push_back(apply(head, rms_norm(row, W.at("model.norm.weight"), s.rms_eps), s.vocab));
  return logits;
}

}  // namespace rvec::test
