// A Hugging Face model: one safetensors file, or a folder with config.json,
// tokenizer files and either `model.safetensors` or sharded files listed in
// `model.safetensors.index.json`.
//
// open_model() validates every shard header and the index before returning:
// shard names cannot leave the folder, every listed shard exists, every
// listed tensor is in its shard, no shard holds an unlisted tensor, and no
// tensor name appears twice. The returned object owns the open shards;
// ModelTensor pointers stay valid as long as the ModelFolder lives.
// Thread-safety: immutable after open(); lookups and reads through its
// shards may run on several threads (see SafetensorsFile for map()).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/safetensors.hpp"
#include "io/staging.hpp"
#include "hf/config.hpp"
#include "hf/tensor_names.hpp"

namespace rvec {

struct ModelTensor {
  const SafetensorsFile* file;
  const TensorInfo* info;
  const std::string& name() const { return info->name; }
};

class ModelFolder {
 public:
  static std::unique_ptr<ModelFolder> open(const std::string& path);

  // The path as given (a folder or a single .safetensors file).
  const std::string& path() const { return path_; }
  bool is_folder() const { return is_folder_; }
  bool has_index() const { return has_index_; }

  const std::vector<std::unique_ptr<SafetensorsFile>>& shards() const { return shards_; }
  // Every tensor, shard by shard in index order, each shard in data order.
  const std::vector<ModelTensor>& tensors() const { return tensors_; }
  const ModelTensor* find(std::string_view name) const;
  // Like find(), but "lm_head.weight" of a tied model is the embedding matrix.
  const ModelTensor* find_resolving_tied(std::string_view name) const;

  const std::optional<ModelConfig>& config() const { return config_; }
  // No lm_head.weight and a config that ties (or says nothing): the head is the embedding.
  bool tied_embeddings() const { return tied_; }
  // Auxiliary files present in the folder (config, tokenizer, chat template, ...).
  const std::vector<std::string>& aux_files() const { return aux_files_; }

  uint64_t parameter_count() const;
  uint64_t tensor_bytes() const;

 private:
  ModelFolder() = default;
  void open_folder();
  void open_single(const std::string& file);
  void open_indexed(const std::string& index_path);
  void index_tensors();

  std::string path_;
  bool is_folder_ = false;
  bool has_index_ = false;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::vector<ModelTensor> tensors_;
  std::map<std::string, size_t, std::less<>> by_name_;
  std::optional<ModelConfig> config_;
  bool tied_ = false;
  std::vector<std::string> aux_files_;
};

// Model folders opened once per path (compared after lexical normalisation:
// "./pre/" is "pre"), so that every vector and job naming a path reads the
// same tensors: the merge reads a tensor once per block however many of them
// use it. Owns the folders, which live as long as it; not thread-safe.
class OpenFolders {
 public:
  // The folder at `path`, opened on first use (an empty path is refused).
  const ModelFolder* get(const std::string& path);

 private:
  std::map<std::string, std::unique_ptr<ModelFolder>> folders_;
};

// Reads elements [first, first + out.size()) of `tensor` (BF16, F16 or F32)
// and widens them to f32. `scratch` must hold out.size() * 4 bytes.
void read_as_f32(const ModelTensor& tensor, uint64_t first, std::span<float> out, std::byte* scratch);

// How copy_aux_files() copies.
struct AuxCopy {
  bool only_config = false;        // config.json alone (a vector folder)
  std::optional<DType> dtype;      // rewrite config.json's torch_dtype (or dtype) to this
};

// Copies the auxiliary files of a model folder (config, tokenizer, chat
// template, ...) into `dest`, all but README.md (each output writes its own
// model card). Nothing to do for a single .safetensors file.
void copy_aux_files(const ModelFolder& source, const StagingDir& dest, const AuxCopy& how);

// Auxiliary files a model folder may carry, in the order they are listed.
const std::vector<std::string>& known_aux_files();

// Number of token ids a tokenizer.json defines (vocab plus added tokens).
uint64_t tokenizer_size(const std::string& tokenizer_json_path);

}  // namespace rvec
