#include "hf/model_folder.hpp"

#include <filesystem>
#include <set>

#include "base/error.hpp"
#include "base/json.hpp"
#include "base/regular_file.hpp"
#include "base/text.hpp"
#include "numeric/codec.hpp"

namespace rvec {
namespace fs = std::filesystem;

namespace {

constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kSingleName = "model.safetensors";

// Whether something (a file, or a FIFO, folder, ... that opening will refuse
// by name) is at `p`: a FIFO named config.json is an error, not an absence.
bool is_present(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

// Shard names must be plain file names inside the folder.
void check_shard_name(const std::string& name, const std::string& index) {
  if (name.empty() || name.find('/') != std::string::npos || name.find('\\') != std::string::npos ||
      name == "." || name == ".." || name.find("..") != std::string::npos || has_control_character(name)) {
    bad_input("{}: shard file name \"{}\" is not a plain file name in the model folder (path traversal?)",
              index, printable(name));
  }
}

}  // namespace

const std::vector<std::string>& known_aux_files() {
  static const std::vector<std::string> kFiles = {
      "config.json",          "generation_config.json", "tokenizer.json",
      "tokenizer_config.json", "vocab.json",             "merges.txt",
      "special_tokens_map.json", "added_tokens.json",    "chat_template.jinja",
      "chat_template.json",   "tokenizer.model",        "README.md",
  };
  return kFiles;
}

std::unique_ptr<ModelFolder> ModelFolder::open(const std::string& path) {
  std::unique_ptr<ModelFolder> model(new ModelFolder());
  model->path_ = path;
  if (path.empty()) bad_input("a model's path is empty");
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (ec || !fs::exists(status)) bad_input("{}: no such file or folder", path);
  if (fs::is_directory(status)) {
    model->is_folder_ = true;
    model->open_folder();
  } else {
    model->open_single(path);
  }
  model->index_tensors();
  return model;
}

void ModelFolder::open_folder() {
  const fs::path dir(path_);
  for (const auto& name : known_aux_files()) {
    if (!is_present(dir / name)) continue;
    check_regular_if_present((dir / name).string());  // merge copies them only at the end
    aux_files_.push_back(name);
  }
  if (is_present(dir / "config.json")) config_ = read_model_config((dir / "config.json").string());

  if (is_present(dir / kIndexName)) {
    open_indexed((dir / kIndexName).string());
    return;
  }
  if (is_present(dir / kSingleName)) {
    open_single((dir / kSingleName).string());
    return;
  }
  std::vector<std::string> found;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() == ".safetensors") found.push_back(entry.path().filename().string());
  }
  if (found.size() == 1) {
    open_single((dir / found.front()).string());
    return;
  }
  if (found.empty()) bad_input("{}: not a model folder (no .safetensors file)", path_);
  bad_input("{}: {} .safetensors files but no {} to say how they fit together", path_, found.size(), kIndexName);
}

void ModelFolder::open_single(const std::string& file) {
  shards_.push_back(SafetensorsFile::open(file));
}

void ModelFolder::open_indexed(const std::string& index_path) {
  has_index_ = true;
  const auto index = read_json_file(index_path, 64'000'000);
  if (!index.is_object()) bad_input("{}: must hold a JSON object", index_path);
  const auto map_it = index.find("weight_map");
  if (map_it == index.end() || !map_it->is_object()) {
    bad_input("{}: field \"weight_map\" is missing or not an object", index_path);
  }
  if (const auto meta = index.find("metadata"); meta != index.end() && !meta->is_object() && !meta->is_null()) {
    bad_input("{}: field \"metadata\" must be an object", index_path);
  }
  std::set<std::string> unique_files;
  std::map<std::string, std::string> listed;  // tensor -> file
  for (const auto& [tensor, file] : map_it->items()) {
    if (!file.is_string()) bad_input("{}: weight_map entry \"{}\" must be a file name", index_path, printable(tensor));
    const auto name = file.get<std::string>();
    check_shard_name(name, index_path);
    unique_files.insert(name);
    listed.emplace(tensor, name);
  }
  const std::vector<std::string> shard_files(unique_files.begin(), unique_files.end());  // sorted by name
  if (listed.empty()) bad_input("{}: weight_map lists no tensors", index_path);
  const fs::path dir(path_);
  for (const auto& name : shard_files) {
    const auto shard_path = (dir / name).string();
    if (!is_present(shard_path)) bad_input("{}: lists shard \"{}\", which is missing", index_path, name);
    shards_.push_back(SafetensorsFile::open(shard_path));
  }
  std::map<std::string, std::string> present;  // tensor -> file
  for (size_t i = 0; i < shards_.size(); ++i) {
    for (const auto& t : shards_[i]->header().tensors) {
      const auto [it, inserted] = present.emplace(t.name, shard_files[i]);
      if (!inserted) {
        bad_input("{}: tensor \"{}\" is in two shards ({} and {})", path_, printable(t.name), it->second,
                  shard_files[i]);
      }
      const auto want = listed.find(t.name);
      if (want == listed.end()) {
        bad_input("{}: tensor \"{}\" is in shard {} but not listed in {}", path_, printable(t.name),
                  shard_files[i], kIndexName);
      }
      if (want->second != shard_files[i]) {
        bad_input("{}: tensor \"{}\" is listed in {} but stored in {}", path_, printable(t.name), want->second,
                  shard_files[i]);
      }
    }
  }
  for (const auto& [tensor, file] : listed) {
    if (!present.contains(tensor)) {
      bad_input("{}: tensor \"{}\" is listed in {} but absent from shard {}", path_, printable(tensor), kIndexName,
                file);
    }
  }
}

void ModelFolder::index_tensors() {
  for (const auto& shard : shards_) {
    for (const auto& t : shard->header().tensors) {
      if (!by_name_.emplace(t.name, tensors_.size()).second) {
        bad_input("{}: tensor \"{}\" appears twice", path_, printable(t.name));
      }
      tensors_.push_back({shard.get(), &t});
    }
  }
  const bool tie_flag = !config_ || config_->tie_word_embeddings.value_or(true);
  tied_ = find(kLmHeadName) == nullptr && find(kEmbedName) != nullptr && tie_flag;
}

const ModelTensor* ModelFolder::find(std::string_view name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

const ModelTensor* ModelFolder::find_resolving_tied(std::string_view name) const {
  if (const auto* t = find(name)) return t;
  if (name == kLmHeadName && tied_) return find(kEmbedName);
  return nullptr;
}

uint64_t ModelFolder::parameter_count() const {
  uint64_t n = 0;
  for (const auto& t : tensors_) n += t.info->element_count();
  return n;
}

uint64_t ModelFolder::tensor_bytes() const {
  uint64_t n = 0;
  for (const auto& t : tensors_) n += t.info->byte_size();
  return n;
}

const ModelFolder* OpenFolders::get(const std::string& path) {
  std::filesystem::path key = std::filesystem::path(path).lexically_normal();
  if (!key.has_filename() && key.has_parent_path()) key = key.parent_path();  // "pre/" is "pre"
  auto& folder = folders_[key.string()];
  if (!folder) folder = ModelFolder::open(path);
  return folder.get();
}

void read_as_f32(const ModelTensor& tensor, uint64_t first, std::span<float> out, std::byte* scratch) {
  const DType dtype = tensor.info->dtype;
  const size_t width = dtype_bits(dtype) / 8;
  tensor.file->read(*tensor.info, first * width, std::span(scratch, out.size() * width));
  decode_to_f32(dtype, scratch, out);
}

void copy_aux_files(const ModelFolder& source, const StagingDir& dest, const AuxCopy& how) {
  if (!source.is_folder()) return;
  const std::filesystem::path dir(source.path());
  for (const auto& name : source.aux_files()) {
    if (name == "README.md") continue;
    if (how.only_config && name != "config.json") continue;
    if (name == "config.json" && how.dtype) {
      auto config = read_json_file((dir / name).string(), 16'000'000);
      const std::string torch(torch_dtype_name(*how.dtype));
      if (config.contains("dtype")) config["dtype"] = torch;
      else config["torch_dtype"] = torch;
      dest.write_text(name, config.dump(2) + "\n");
      continue;
    }
    dest.copy_in(dir / name, name);
  }
}

uint64_t tokenizer_size(const std::string& path) {
  const auto tok = read_json_file(path);
  uint64_t size = 0;
  if (const auto model = tok.find("model"); model != tok.end() && model->is_object()) {
    if (const auto vocab = model->find("vocab"); vocab != model->end()) {
      if (vocab->is_object()) {
        for (const auto& [piece, id] : vocab->items()) {
          if (id.is_number_unsigned()) size = std::max(size, id.get<uint64_t>() + 1);
        }
      } else if (vocab->is_array()) {  // Unigram: [[piece, score], ...]
        size = vocab->size();
      }
    }
  }
  if (const auto added = tok.find("added_tokens"); added != tok.end() && added->is_array()) {
    for (const auto& token : *added) {
      if (token.is_object() && token.contains("id") && token["id"].is_number_unsigned()) {
        size = std::max(size, token["id"].get<uint64_t>() + 1);
      }
    }
  }
  return size;
}

}  // namespace rvec
