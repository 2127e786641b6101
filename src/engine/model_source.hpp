// Where the built-in engine loads a model from: a Hugging Face folder
// (config.json, safetensors, tokenizer.json, tokenizer_config.json) or a
// single GGUF file (metadata keys, tensors, tokenizer and chat template all
// inside it). The engine asks for weights by their Hugging Face names (the
// tensor-name table, hf/tensor_names.hpp) and the source maps them to what it
// stores, so transformer.cpp knows nothing of the file format.
//
// Every source validates as strictly as the other: the hyperparameters the
// engine's arithmetic depends on, each tensor's presence, shape and type, and
// that every stored tensor is used; a problem is one bad-input line naming
// the file and the field or tensor. A source is used by one thread at a time
// during load; it owns its open files until destroyed.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/transformer.hpp"
#include "numeric/matmul.hpp"
#include "text/chat_template.hpp"
#include "text/tokenizer.hpp"

namespace rvec {

class ModelSource {
 public:
  // A folder, or a file whose first bytes are the GGUF magic.
  static std::unique_ptr<ModelSource> open(const std::string& path);
  virtual ~ModelSource() = default;

  // The path it was opened from, for messages.
  virtual const std::string& path() const = 0;
  // Validated hyperparameters, eos/bos ids and whether the head is tied.
  virtual const TransformerConfig& config() const = 0;

  // Whether the model stores the tensor of this Hugging Face name.
  virtual bool has(const std::string& name) const = 0;
  // A 1-D tensor of `size` values, as f32.
  virtual std::vector<float> vector(const std::string& name, size_t size) const = 0;
  // Appends the rows of a [rows, cols] tensor to `w`, in the encoding the
  // engine runs nearest to what is stored (bf16 stays bf16, Q8_0 stays Q8_0).
  virtual void append_rows(WeightMatrix& w, const std::string& name, size_t rows, size_t cols) const = 0;
  // Refuses a stored tensor that none of the calls above asked for: running
  // without it would compute another model.
  virtual void check_every_tensor_read() const = 0;

  // The tokenizer; null when the model has none (then only token ids run),
  // with `absence` set to one line saying why.
  virtual std::shared_ptr<const Tokenizer> tokenizer(std::string& absence) const = 0;
  // The chat template; a bad-input error saying why when there is none.
  virtual ChatTemplate chat_template() const = 0;
};

// The Hugging Face folder source (hf_source.cpp) and the GGUF one (gguf_source.cpp).
std::unique_ptr<ModelSource> open_hf_source(const std::string& folder);
std::unique_ptr<ModelSource> open_gguf_source(const std::string& file);

}  // namespace rvec
