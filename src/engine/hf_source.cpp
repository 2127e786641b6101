// ModelSource for a Hugging Face folder: config.json through engine_config,
// safetensors tensors through hf/model_folder, tokenizer.json and the chat
// template from the folder.
#include <filesystem>
#include <set>

#include "base/error.hpp"
#include "base/text.hpp"
#include "engine/engine_config.hpp"
#include "engine/model_source.hpp"
#include "hf/model_folder.hpp"
#include "numeric/codec.hpp"

namespace rvec {
namespace {

class HfSource final : public ModelSource {
 public:
  explicit HfSource(const std::string& folder)
      : folder_(folder), model_(ModelFolder::open(folder)), config_(read_engine_config(*model_, folder)) {}

  const std::string& path() const override { return folder_; }
  const TransformerConfig& config() const override { return config_; }
  bool has(const std::string& name) const override { return model_->find(name) != nullptr; }

  std::vector<float> vector(const std::string& name, size_t size) const override {
    const ModelTensor& t = tensor(name, {size});
    std::vector<float> out(size);
    std::vector<std::byte> scratch(size * 4);
    read_as_f32(t, 0, out, scratch.data());
    return out;
  }

  // bf16 is kept as bf16 and read straight into the matrix; F16 and F32 become f32.
  void append_rows(WeightMatrix& w, const std::string& name, size_t rows, size_t cols) const override {
    const ModelTensor& t = tensor(name, {rows, cols});
    const bool bf16 = t.info->dtype == DType::kBF16;
    if (w.rows > 0 && bf16 != w.is_bf16()) bad_input("{}: tensor {} mixes dtypes with its neighbours", folder_, name);
    if (w.rows == 0) w.cols = cols;
    if (bf16) {
      const size_t at = w.bf16.size();
      w.bf16.resize(at + rows * cols);
      t.file->read(*t.info, 0, std::as_writable_bytes(std::span(w.bf16).subspan(at)));
    } else {
      const size_t at = w.f32.size();
      w.f32.resize(at + rows * cols);
      std::vector<std::byte> scratch(rows * cols * 4);
      read_as_f32(t, 0, std::span(w.f32).subspan(at), scratch.data());
    }
    w.rows += rows;
  }

  // A tensor the engine did not read is a weight config.json does not
  // account for (a layer past num_hidden_layers, an o_proj or MLP bias, ...).
  void check_every_tensor_read() const override {
    for (const auto& t : model_->tensors()) {
      if (read_.contains(t.name()) || engine_may_ignore(t.name())) continue;
      bad_input("{}: tensor {} is not used by the built-in engine's {} as config.json describes it; refusing to "
                "run without it",
                folder_, printable(t.name()), config_.architecture);
    }
  }

  std::shared_ptr<const Tokenizer> tokenizer(std::string& absence) const override {
    if (std::filesystem::exists(std::filesystem::path(folder_) / "tokenizer.json")) return Tokenizer::load(folder_);
    absence = fmt::format("{}: no tokenizer.json, so text cannot be encoded (give token ids instead)", folder_);
    return nullptr;
  }
  ChatTemplate chat_template() const override { return ChatTemplate::from_folder(folder_); }

 private:
  const ModelTensor& tensor(const std::string& name, const std::vector<uint64_t>& shape) const {
    const ModelTensor* t = model_->find_resolving_tied(name);
    if (t == nullptr) bad_input("{}: tensor {} is missing", folder_, name);
    read_.insert(t->name());
    if (t->info->shape != shape) {
      bad_input("{}: tensor {} has shape {}, the config implies {}", folder_, name, shape_string(t->info->shape),
                shape_string(shape));
    }
    const DType d = t->info->dtype;
    if (d != DType::kBF16 && d != DType::kF16 && d != DType::kF32) {
      bad_input("{}: tensor {} is {}; the engine reads BF16, F16 and F32", folder_, name, dtype_name(d));
    }
    return *t;
  }

  std::string folder_;
  std::unique_ptr<ModelFolder> model_;
  TransformerConfig config_;
  mutable std::set<std::string> read_;  // names of the tensors handed out
};

}  // namespace

std::unique_ptr<ModelSource> open_hf_source(const std::string& folder) { return std::make_unique<HfSource>(folder); }

}  // namespace rvec
