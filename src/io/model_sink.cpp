#include "io/model_sink.hpp"

#include "base/error.hpp"
#include "io/safetensors.hpp"

namespace rvec {
namespace fs = std::filesystem;

namespace {

class SafetensorsSink final : public ModelSink {
 public:
  SafetensorsSink(const std::vector<TensorSpec>& tensors, Metadata metadata, uint64_t max_shard_bytes)
      : metadata_(std::move(metadata)), shards_(plan_shards(tensors, max_shard_bytes)) {
    for (const auto& shard : shards_) {
      const uint64_t header = build_header(safetensors_order(shard.tensors), metadata_).size();
      files_.push_back({shard.file_name, shard.tensors, 8 + header + shard.tensor_bytes});
    }
  }

  const std::vector<SinkFile>& files() const override { return files_; }

  std::unique_ptr<TensorFileWriter> open(size_t i, const fs::path& dir) const override {
    return std::make_unique<SafetensorsWriter>((dir / files_.at(i).name).string(), files_[i].tensors, metadata_);
  }

  bool verify(size_t i, const fs::path& dir) const override {
    const SinkFile& planned = files_.at(i);
    const fs::path file = dir / planned.name;
    std::error_code ec;
    if (!fs::is_regular_file(file, ec) || fs::file_size(file, ec) != planned.bytes || ec) return false;
    try {
      const auto opened = SafetensorsFile::open(file.string());
      if (opened->header().tensors.size() != planned.tensors.size()) return false;
      for (const auto& t : planned.tensors) {
        const TensorInfo* found = opened->header().find(t.name);
        if (!found || found->dtype != t.dtype || found->shape != t.shape) return false;
      }
      return true;
    } catch (const Error&) {
      return false;
    }
  }

  void finish(const StagingDir& dir) const override {
    if (shards_.size() > 1) dir.write_text("model.safetensors.index.json", index_json(shards_));
  }

 private:
  Metadata metadata_;
  std::vector<ShardPlan> shards_;
  std::vector<SinkFile> files_;
};

}  // namespace

uint64_t ModelSink::total_bytes() const {
  uint64_t n = 0;
  for (const auto& f : files()) n += f.bytes;
  return n;
}

std::unique_ptr<ModelSink> safetensors_sink(const std::vector<TensorSpec>& tensors, const Metadata& metadata,
                                            uint64_t max_shard_bytes) {
  return std::make_unique<SafetensorsSink>(tensors, metadata, max_shard_bytes);
}

}  // namespace rvec
