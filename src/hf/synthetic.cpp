#include "hf/synthetic.hpp"

#include <fmt/format.h>

#include <cmath>
#include <vector>

#include "base/hash.hpp"
#include "io/model_sink.hpp"
#include "numeric/codec.hpp"

namespace rvec {
namespace {

namespace fs = std::filesystem;

enum class Stream : uint64_t { kParent = 1, kUnrelatedParent = 2, kPostDelta = 3, kTargetDelta = 4 };

uint64_t splitmix64(uint64_t x) { return mix64(x + 0x9E3779B97F4A7C15ull); }

uint64_t hash_name(const std::string& name) {
  uint64_t h = 0xCBF29CE484222325ull;  // FNV-1a
  for (unsigned char c : name) h = (h ^ c) * 0x100000001B3ull;
  return h;
}

// Uniform in [-1, 1) as a pure function of (key, index).
float uniform(uint64_t key, uint64_t index) {
  const uint64_t bits = splitmix64(key ^ splitmix64(index));
  return static_cast<float>(static_cast<double>(bits >> 40) * (2.0 / 16777216.0) - 1.0);
}

bool is_vector(const TensorSpec& t) { return t.shape.size() == 1; }
bool is_norm(const TensorSpec& t) { return t.name.find("norm") != std::string::npos; }

struct Member {
  std::string name;
  Stream parent;
  std::vector<std::pair<Stream, double>> deltas;  // stream, size relative to the weights
  uint64_t extra_rows;
};

// Writes one tensor's values: parent(i) + delta(i), in chunks.
class TensorFiller {
 public:
  TensorFiller(uint64_t seed, const Member& member) : seed_(seed), member_(member) {}

  void fill(const TensorSpec& t, uint64_t first, std::span<float> out) const {
    // Weights ~ U(-a, a) with std 0.02; norms near 1; biases small.
    const float scale = is_norm(t) ? 0.05f : is_vector(t) ? 0.05f : 0.02f * std::sqrt(3.0f);
    const float offset = is_norm(t) ? 1.0f : 0.0f;
    const uint64_t name_key = hash_name(t.name) ^ seed_;
    const uint64_t parent_key = splitmix64(name_key ^ static_cast<uint64_t>(member_.parent));
    for (size_t k = 0; k < out.size(); ++k) out[k] = offset + scale * uniform(parent_key, first + k);
    for (const auto& [stream, size] : member_.deltas) {
      const uint64_t delta_key = splitmix64(name_key ^ static_cast<uint64_t>(stream));
      const float delta = static_cast<float>(size) * scale;
      for (size_t k = 0; k < out.size(); ++k) out[k] += delta * uniform(delta_key, first + k);
    }
  }

 private:
  uint64_t seed_;
  const Member& member_;
};

std::string tokenizer_json(uint64_t size) {
  nlohmann::json vocab = nlohmann::json::object();
  const uint64_t special = 3;
  for (uint64_t i = 0; i + special < size; ++i) vocab["t" + std::to_string(i)] = i;
  nlohmann::ordered_json added = nlohmann::ordered_json::array();
  const char* names[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  for (uint64_t k = 0; k < special && k < size; ++k) {
    added.push_back({{"id", size - special + k}, {"content", names[k]}, {"special", true}});
  }
  nlohmann::ordered_json tok = {
      {"version", "1.0"},
      {"added_tokens", added},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::ordered_json::array()}}},
      {"pre_tokenizer",  // Qwen2's
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern", {{"Regex", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
           {"behavior", "Isolated"},
           {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}}}}}},
  };
  return tok.dump() + "\n";
}

const char* kChatMlTemplate =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

void write_aux_files(const StagingDir& dir, const Qwen2Shape& shape, DType dtype) {
  dir.write_text("config.json", qwen2_config(shape, dtype).dump(2) + "\n");
  dir.write_text("generation_config.json",
                 nlohmann::json{{"bos_token_id", 151643}, {"eos_token_id", {151645, 151643}},
                                {"do_sample", true}, {"temperature", 0.7}, {"top_p", 0.8}}
                         .dump(2) + "\n");
  dir.write_text("tokenizer_config.json",
                 nlohmann::json{{"chat_template", kChatMlTemplate}, {"eos_token", "<|im_end|>"},
                                {"model_max_length", 131072}, {"tokenizer_class", "Qwen2Tokenizer"}}
                         .dump(2) + "\n");
  dir.write_text("tokenizer.json", tokenizer_json(shape.tokenizer_size));
}

uint64_t write_member(const fs::path& dir, const Qwen2Shape& base_shape, const Member& member,
                      const FamilyOptions& options, uint64_t done_before, uint64_t total, const ProgressFn& progress) {
  Qwen2Shape shape = base_shape;
  shape.vocab_rows += member.extra_rows;
  const auto tensors = qwen2_tensors(shape, options.dtype);
  const Metadata metadata = {
      {"rvec.generated", fmt::format("shape={} seed={} member={}", shape.name, options.seed, member.name)}};
  const auto sink = safetensors_sink(tensors, metadata, options.max_shard_bytes);
  const OutputLock lock(dir);
  StagingDir staging(dir, options.overwrite);
  const TensorFiller filler(options.seed, member);
  constexpr size_t kChunk = 1 << 20;
  std::vector<float> values(kChunk);
  std::vector<std::byte> bytes(kChunk * 4);
  uint64_t done = 0;
  for (size_t s = 0; s < sink->files().size(); ++s) {
    auto shard = sink->open(s, staging.path());
    if (options.sparse) {
      shard->finish_sparse();
      for (const auto& t : sink->files()[s].tensors) done += t.byte_size();
      if (progress) progress(done_before + done, total);
      continue;
    }
    const size_t width = dtype_bits(options.dtype) / 8;
    for (const auto& t : shard->order()) {
      const uint64_t n = t.byte_size() / width;
      for (uint64_t first = 0; first < n; first += kChunk) {
        const size_t count = static_cast<size_t>(std::min<uint64_t>(kChunk, n - first));
        const std::span<float> chunk(values.data(), count);
        filler.fill(t, first, chunk);
        encode_from_f32(options.dtype, chunk, bytes.data());
        shard->append(std::span(bytes.data(), count * width));
        done += count * width;
        if (progress) progress(done_before + done, total);
      }
    }
    shard->finish();
  }
  sink->finish(staging);
  write_aux_files(staging, shape, options.dtype);
  staging.commit();
  return done;
}

}  // namespace

uint64_t write_family(const fs::path& out, const FamilyOptions& options, const ProgressFn& progress) {
  Qwen2Shape shape = qwen2_shape(options.shape);
  if (options.tied) shape.tied = *options.tied;
  std::vector<std::pair<Stream, double>> target_deltas = {{Stream::kTargetDelta, options.target_delta}};
  if (options.target_from_post) target_deltas.insert(target_deltas.begin(), {Stream::kPostDelta, options.post_delta});
  const std::vector<Member> members = {
      {"pre", Stream::kParent, {}, 0},
      {"post", options.unrelated_post ? Stream::kUnrelatedParent : Stream::kParent,
       {{Stream::kPostDelta, options.post_delta}}, 0},
      {"target", Stream::kParent, target_deltas, options.target_extra_rows},
  };
  uint64_t total = 0;
  for (const auto& m : members) {
    Qwen2Shape s = shape;
    s.vocab_rows += m.extra_rows;
    for (const auto& t : qwen2_tensors(s, options.dtype)) total += t.byte_size();
  }
  std::error_code ec;
  fs::create_directories(out, ec);
  uint64_t done = 0;
  for (const auto& m : members) done += write_member(out / m.name, shape, m, options, done, total, progress);
  return done;
}

}  // namespace rvec
