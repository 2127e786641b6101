#include "engine/transformer.hpp"

#include <algorithm>
#include <cmath>

#include "base/error.hpp"
#include "base/thread_pool.hpp"
#include "engine/model_source.hpp"
#include "hf/tensor_names.hpp"
#include "numeric/linalg.hpp"

namespace rvec {
namespace {

// ---- ops on activations ----------------------------------------------------

// Earlier positions whose logits are computed at once (EarlierLogits): one
// head matmul per block, and at most this many rows of logits in memory.
constexpr size_t kHeadBlock = 64;

// out[t, :] = x[t, :] * rsqrt(mean(x[t, :]^2) + eps) * weight     x, out: [n, dim]
void rms_norm(const float* x, const std::vector<float>& weight, float eps, size_t n, float* out) {
  const size_t dim = weight.size();
  for (size_t t = 0; t < n; ++t) {
    const float* row = x + t * dim;
    const float scale = 1.0f / std::sqrt(linalg::dot(row, row, dim) / static_cast<float>(dim) + eps);
    for (size_t i = 0; i < dim; ++i) out[t * dim + i] = row[i] * scale * weight[i];
  }
}

// Rotate-half RoPE on one head vector at `position`:  v: [head_dim]
void rope(float* v, size_t head_dim, const std::vector<float>& inv_freq, size_t position) {
  const size_t half = head_dim / 2;
  for (size_t j = 0; j < half; ++j) {
    const float angle = static_cast<float>(position) * inv_freq[j];
    const float c = std::cos(angle), s = std::sin(angle);
    const float a = v[j], b = v[j + half];
    v[j] = a * c - b * s;
    v[j + half] = b * c + a * s;
  }
}

// act[t, i] = silu(gate_up[t, i]) * gate_up[t, inter + i]      gate_up: [n, 2 inter], act: [n, inter]
void silu_times_up(const float* gate_up, size_t n, size_t inter, float* act) {
  for (size_t t = 0; t < n; ++t) {
    const float* gate = gate_up + t * 2 * inter;
    const float* up = gate + inter;
    for (size_t i = 0; i < inter; ++i) act[t * inter + i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
  }
}

void add_in_place(float* x, const float* delta, size_t count) {
  for (size_t i = 0; i < count; ++i) x[i] += delta[i];
}

}  // namespace

// Activations for one forward() call, reused across calls.
struct Transformer::Scratch {
  std::vector<float> x;        // [n, hidden] residual stream
  std::vector<float> h;        // [n, hidden] normalised
  std::vector<float> qkv;      // [n, q_dim + 2 kv_dim]
  std::vector<float> att;      // [n, q_dim]
  std::vector<float> gate_up;  // [n, 2 inter]
  std::vector<float> act;      // [n, inter]
  std::vector<float> last;     // [items, hidden]
  std::vector<float> block;         // [kHeadBlock, hidden] normalised earlier rows
  std::vector<float> block_logits;  // [kHeadBlock, vocab]
  std::vector<size_t> position;  // [n] position of each token in its sequence
  std::vector<size_t> item;      // [n] which item each token belongs to
  std::vector<size_t> query_tiles;  // first token of each attention task's tile
};

uint64_t KvCache::bytes() const {
  uint64_t n = 0;
  for (size_t l = 0; l < keys.size(); ++l) n += (keys[l].capacity() + values[l].capacity()) * 4;
  return n;
}

Transformer::Transformer(TransformerConfig config, ThreadPool& pool)
    : config_(std::move(config)), pool_(pool), scratch_(std::make_unique<Scratch>()) {}
Transformer::~Transformer() = default;

std::unique_ptr<Transformer> Transformer::load(const std::string& path, ThreadPool& pool) {
  return load(*ModelSource::open(path), pool);
}

std::unique_ptr<Transformer> Transformer::load(const ModelSource& load, ThreadPool& pool) {
  std::unique_ptr<Transformer> t(new Transformer(load.config(), pool));
  t->folder_ = load.path();
  const TransformerConfig& c = t->config_;
  load.append_rows(t->embed_, std::string(kEmbedName), c.vocab, c.hidden);
  t->config_.qkv_bias = load.has(layer_tensor_name(0, "self_attn.q_proj.bias"));
  for (size_t l = 0; l < c.layers; ++l) {
    const auto name = [l](std::string_view suffix) { return layer_tensor_name(l, suffix); };
    Layer layer;
    layer.attn_norm = load.vector(name("input_layernorm.weight"), c.hidden);
    layer.mlp_norm = load.vector(name("post_attention_layernorm.weight"), c.hidden);
    load.append_rows(layer.qkv, name("self_attn.q_proj.weight"), c.q_dim(), c.hidden);
    load.append_rows(layer.qkv, name("self_attn.k_proj.weight"), c.kv_dim(), c.hidden);
    load.append_rows(layer.qkv, name("self_attn.v_proj.weight"), c.kv_dim(), c.hidden);
    if (c.qkv_bias) {
      for (const auto& [suffix, rows] : {std::pair{"self_attn.q_proj.bias", c.q_dim()},
                                         std::pair{"self_attn.k_proj.bias", c.kv_dim()},
                                         std::pair{"self_attn.v_proj.bias", c.kv_dim()}}) {
        const auto bias = load.vector(name(suffix), rows);
        layer.qkv.bias.insert(layer.qkv.bias.end(), bias.begin(), bias.end());
      }
    }
    load.append_rows(layer.o, name("self_attn.o_proj.weight"), c.hidden, c.q_dim());
    load.append_rows(layer.gate_up, name("mlp.gate_proj.weight"), c.intermediate, c.hidden);
    load.append_rows(layer.gate_up, name("mlp.up_proj.weight"), c.intermediate, c.hidden);
    load.append_rows(layer.down, name("mlp.down_proj.weight"), c.hidden, c.intermediate);
    t->layers_.push_back(std::move(layer));
  }
  t->final_norm_ = load.vector(std::string(kFinalNormName), c.hidden);
  if (!c.tied_head) load.append_rows(t->head_, std::string(kLmHeadName), c.vocab, c.hidden);
  load.check_every_tensor_read();
  // HF computes inv_freq in f32: 1 / theta^(2j / d).
  for (size_t j = 0; j < c.head_dim / 2; ++j) {
    t->inv_freq_.push_back(1.0f / std::pow(c.rope_theta, static_cast<float>(2 * j) / static_cast<float>(c.head_dim)));
  }
  return t;
}

uint64_t Transformer::weight_bytes() const {
  uint64_t n = config_.tied_head ? embed_.bytes() : head_.bytes();
  for (const auto& l : layers_) n += l.qkv.bytes() + l.o.bytes() + l.gate_up.bytes() + l.down.bytes();
  return n;
}

KvCache Transformer::new_cache() const {
  KvCache cache;
  cache.keys.resize(config_.layers);
  cache.values.resize(config_.layers);
  return cache;
}

// Causal attention of every new token over its own sequence's cache. Tasks
// are (a tile of up to kQueryTile consecutive tokens of one sequence, one KV
// head) with the query heads that read it (GQA: query head h reads KV head
// h / (heads / kv_heads)), so each key tile serves tokens x heads queries.
void Transformer::attention(size_t layer, std::span<const ForwardItem> items) {
  constexpr size_t kQueryTile = 16;
  const TransformerConfig& c = config_;
  Scratch& s = *scratch_;
  const size_t qkv_width = c.q_dim() + 2 * c.kv_dim(), group = c.heads / c.kv_heads, hd = c.head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  s.query_tiles.clear();  // first token of each tile
  for (size_t t = 0; t < s.item.size(); ++t) {
    if (t == 0 || s.item[t] != s.item[t - 1] || t - s.query_tiles.back() == kQueryTile) s.query_tiles.push_back(t);
  }
  pool_.parallel_for(s.query_tiles.size() * c.kv_heads, [&](size_t task) {
    const size_t tile = task / c.kv_heads, kv_head = task % c.kv_heads;
    const size_t t0 = s.query_tiles[tile];
    const size_t end = tile + 1 < s.query_tiles.size() ? s.query_tiles[tile + 1] : s.item.size();
    const KvCache& cache = *items[s.item[t0]].cache;
    linalg::attention(s.qkv.data() + t0 * qkv_width + kv_head * group * hd, qkv_width, end - t0, group,
                      s.position[t0], cache.keys[layer].data() + kv_head * hd,
                      cache.values[layer].data() + kv_head * hd, c.kv_dim(), hd, scale,
                      s.att.data() + t0 * c.q_dim() + kv_head * group * hd, c.q_dim());
  });
}

// One decoder layer as a list of named ops.   x: [n, hidden]
void Transformer::run_layer(const Layer& layer, size_t index, std::span<const ForwardItem> items) {
  const TransformerConfig& c = config_;
  Scratch& s = *scratch_;
  const size_t n = s.position.size(), qkv_width = c.q_dim() + 2 * c.kv_dim();

  rms_norm(s.x.data(), layer.attn_norm, c.rms_eps, n, s.h.data());   // h = norm(x)
  matmul(layer.qkv, s.h.data(), n, s.qkv.data(), pool_);             // q|k|v = h·Wqkvᵀ + b
  for (size_t t = 0; t < n; ++t) {                                   // rotate q and k
    float* q = s.qkv.data() + t * qkv_width;
    for (size_t head = 0; head < c.heads + c.kv_heads; ++head) rope(q + head * c.head_dim, c.head_dim, inv_freq_, s.position[t]);
    KvCache& cache = *items[s.item[t]].cache;                        // cache k and v
    std::copy_n(q + c.q_dim(), c.kv_dim(), cache.keys[index].data() + s.position[t] * c.kv_dim());
    std::copy_n(q + c.q_dim() + c.kv_dim(), c.kv_dim(), cache.values[index].data() + s.position[t] * c.kv_dim());
  }
  attention(index, items);                                           // att = softmax(q·kᵀ/√d)·v
  matmul(layer.o, s.att.data(), n, s.h.data(), pool_);               // x += att·Woᵀ
  add_in_place(s.x.data(), s.h.data(), n * c.hidden);
  rms_norm(s.x.data(), layer.mlp_norm, c.rms_eps, n, s.h.data());    // h = norm(x)
  matmul(layer.gate_up, s.h.data(), n, s.gate_up.data(), pool_);     // g|u = h·Wguᵀ
  silu_times_up(s.gate_up.data(), n, c.intermediate, s.act.data());  // a = silu(g)·u
  matmul(layer.down, s.act.data(), n, s.h.data(), pool_);            // x += a·Wdᵀ
  add_in_place(s.x.data(), s.h.data(), n * c.hidden);
}

// Logits of every token but the last of each every_position item, a block
// of rows at a time, handed to `earlier`.
void Transformer::earlier_logits(std::span<const ForwardItem> items, const EarlierLogits& earlier) {
  const TransformerConfig& c = config_;
  Scratch& s = *scratch_;
  size_t first_row = 0;  // the item's first token in s.x
  for (size_t i = 0; i < items.size(); ++i) {
    const size_t rows = items[i].tokens.size() - 1;
    for (size_t begin = 0; items[i].every_position && begin < rows; begin += kHeadBlock) {
      const size_t count = std::min(kHeadBlock, rows - begin);
      s.block.resize(count * c.hidden);
      s.block_logits.resize(count * c.vocab);
      rms_norm(s.x.data() + (first_row + begin) * c.hidden, final_norm_, c.rms_eps, count, s.block.data());
      matmul(c.tied_head ? embed_ : head_, s.block.data(), count, s.block_logits.data(), pool_);
      for (size_t r = 0; r < count; ++r) earlier(i, begin + r, std::span(s.block_logits).subspan(r * c.vocab, c.vocab));
    }
    first_row += items[i].tokens.size();
  }
}

void Transformer::forward(std::span<const ForwardItem> items, std::vector<float>& logits, const EarlierLogits& earlier) {
  const TransformerConfig& c = config_;
  Scratch& s = *scratch_;
  s.position.clear();
  s.item.clear();
  for (size_t i = 0; i < items.size(); ++i) {
    KvCache& cache = *items[i].cache;
    if (items[i].tokens.empty()) bad_input("forward: sequence {} has no new tokens", i);
    const size_t length = cache.length() + items[i].tokens.size();
    if (length > c.max_positions) {
      bad_input("sequence of {} tokens exceeds the model's {} positions", length, c.max_positions);
    }
    for (size_t t = 0; t < items[i].tokens.size(); ++t) {
      const TokenId id = items[i].tokens[t];
      if (id < 0 || static_cast<size_t>(id) >= c.vocab) bad_input("token id {} is outside the vocabulary ({})", id, c.vocab);
      s.position.push_back(cache.length() + t);
      s.item.push_back(i);
    }
    for (size_t l = 0; l < c.layers; ++l) {
      cache.keys[l].resize(length * c.kv_dim());
      cache.values[l].resize(length * c.kv_dim());
    }
  }
  const size_t n = s.position.size();
  s.x.resize(n * c.hidden);
  s.h.resize(n * c.hidden);
  s.qkv.resize(n * (c.q_dim() + 2 * c.kv_dim()));
  s.att.resize(n * c.q_dim());
  s.gate_up.resize(n * 2 * c.intermediate);
  s.act.resize(n * c.intermediate);

  size_t t = 0;  // x = embed[tokens]
  for (const auto& item : items) {
    for (const TokenId id : item.tokens) embed_.row_f32(static_cast<size_t>(id), s.x.data() + (t++) * c.hidden);
  }
  for (size_t l = 0; l < c.layers; ++l) run_layer(layers_[l], l, items);
  if (earlier) earlier_logits(items, earlier);

  s.last.resize(items.size() * c.hidden);  // logits = norm(x_last)·Wheadᵀ
  size_t end = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    end += items[i].tokens.size();
    rms_norm(s.x.data() + (end - 1) * c.hidden, final_norm_, c.rms_eps, 1, s.last.data() + i * c.hidden);
    items[i].cache->length_ += items[i].tokens.size();
  }
  logits.resize(items.size() * c.vocab);
  matmul(c.tied_head ? embed_ : head_, s.last.data(), items.size(), logits.data(), pool_);
}

}  // namespace rvec
