// A Qwen2 / Llama decoder running on the CPU, straight from a Hugging Face
// folder or a GGUF file (engine/model_source.hpp): no conversion step, weights
// kept as stored (bf16, f32 or Q8_0; f16 and GGUF's other block types are
// widened to f32 at load), every activation computed in f32.
//
// forward() takes the new tokens of several sequences at once — whole
// prompts and single decode steps mixed — so each weight matrix is read once
// per step for the whole batch. Each sequence owns a KvCache; the Transformer
// itself is immutable after load() apart from its scratch buffers, so one
// thread at a time may call forward().
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "numeric/matmul.hpp"
#include "text/tokenizer.hpp"

namespace rvec {

class ThreadPool;
class ModelSource;

struct TransformerConfig {
  std::string architecture;  // "Qwen2ForCausalLM", "LlamaForCausalLM", ...
  size_t hidden = 0, layers = 0, heads = 0, kv_heads = 0, head_dim = 0, intermediate = 0, vocab = 0;
  size_t max_positions = 0;
  float rms_eps = 1e-6f;
  float rope_theta = 10000.0f;
  bool tied_head = false;
  bool qkv_bias = false;
  std::vector<TokenId> eos_ids;  // config.json and generation_config.json
  std::optional<TokenId> bos_id;

  size_t q_dim() const { return heads * head_dim; }
  size_t kv_dim() const { return kv_heads * head_dim; }
};

// Keys and values of one sequence, per layer: [length, kv_heads * head_dim].
class KvCache {
 public:
  size_t length() const { return length_; }
  uint64_t bytes() const;

 private:
  friend class Transformer;
  std::vector<std::vector<float>> keys, values;
  size_t length_ = 0;
};

struct ForwardItem {
  KvCache* cache;                   // appended to
  std::span<const TokenId> tokens;  // at positions cache->length() ...
  // Also compute the logits after each of `tokens` but the last (to score a
  // prompt); they go to forward()'s `earlier` callback. Off by default: the
  // head then runs for the last token only.
  bool every_position = false;
};

// The logits after tokens[token] of items[item], for a token before the
// item's last: [vocab], valid during the call only.
using EarlierLogits = std::function<void(size_t item, size_t token, std::span<const float> logits)>;

class Transformer {
 public:
  // Validates the configuration and every tensor's presence, dtype and shape.
  static std::unique_ptr<Transformer> load(const ModelSource& source, ThreadPool& pool);
  // The same from ModelSource::open(path): a folder or a .gguf file.
  static std::unique_ptr<Transformer> load(const std::string& path, ThreadPool& pool);
  ~Transformer();

  const TransformerConfig& config() const { return config_; }
  // The folder or file the model was loaded from (for messages).
  const std::string& folder() const { return folder_; }
  // Bytes of weights one decode step streams (all matrices and the head).
  uint64_t weight_bytes() const;
  KvCache new_cache() const;

  // Runs every item's tokens; logits: [items.size(), vocab], for each item's
  // last token. Items with every_position also report their earlier tokens'
  // logits to `earlier`, in order, a block of rows at a time (so a long
  // prompt never holds [tokens, vocab] floats); `earlier` must not throw.
  void forward(std::span<const ForwardItem> items, std::vector<float>& logits, const EarlierLogits& earlier = {});

 private:
  struct Layer {
    std::vector<float> attn_norm, mlp_norm;  // [hidden]
    WeightMatrix qkv;                        // [q_dim + 2 kv_dim, hidden], q/k/v stacked
    WeightMatrix o;                          // [hidden, q_dim]
    WeightMatrix gate_up;                    // [2 intermediate, hidden], gate then up
    WeightMatrix down;                       // [hidden, intermediate]
  };
  struct Scratch;

  Transformer(TransformerConfig config, ThreadPool& pool);
  void run_layer(const Layer& layer, size_t index, std::span<const ForwardItem> items);
  void attention(size_t layer, std::span<const ForwardItem> items);
  void earlier_logits(std::span<const ForwardItem> items, const EarlierLogits& earlier);

  TransformerConfig config_;
  std::string folder_;
  ThreadPool& pool_;
  WeightMatrix embed_;  // [vocab, hidden]
  std::vector<Layer> layers_;
  std::vector<float> final_norm_;
  WeightMatrix head_;  // [vocab, hidden]; empty when tied to embed_
  std::vector<float> inv_freq_;  // [head_dim / 2]
  std::unique_ptr<Scratch> scratch_;
};

}  // namespace rvec
