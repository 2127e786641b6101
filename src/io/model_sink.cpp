#include "io/model_sink.hpp"

#include "base/error.hpp"
#include "io/safetensors.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>

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

// Appends each tensor's bytes and the zero padding after it.
class GgufWriter final : public TensorFileWriter {
 public:
  GgufWriter(std::string path, const std::string& header, std::vector<TensorSpec> order, uint64_t total_size)
      : order_(std::move(order)), file_(std::move(path), total_size) {
    file_.append(std::as_bytes(std::span(header)));
    advance_past_empty();
  }

  const std::vector<TensorSpec>& order() const override { return order_; }
  uint64_t total_size() const override { return file_.total_size(); }

  void append(std::span<const std::byte> bytes) override {
    while (!bytes.empty()) {
      if (current_ >= order_.size()) fail(ErrorKind::kBadInput, "{}: more tensor data than planned", file_.path());
      const uint64_t take = std::min<uint64_t>(left_, bytes.size());
      file_.append(bytes.first(take));
      bytes = bytes.subspan(take);
      left_ -= take;
      if (left_ == 0) end_tensor();
    }
  }
  void finish() override { file_.finish(); }
  void finish_sparse() override { file_.finish_sparse(); }

 private:
  void end_tensor() {
    static constexpr std::byte kZeros[kGgufAlignment] = {};
    file_.append(std::span(kZeros, gguf_padding(order_[current_].byte_size(), kGgufAlignment)));
    ++current_;
    advance_past_empty();
  }
  void advance_past_empty() {
    left_ = current_ < order_.size() ? order_[current_].byte_size() : 0;
    if (current_ < order_.size() && left_ == 0) end_tensor();
  }

  std::vector<TensorSpec> order_;
  OutputFile file_;
  size_t current_ = 0;
  uint64_t left_ = 0;
};

// One GGUF file of the output.
struct GgufFilePlan {
  std::string header;
  std::vector<TensorSpec> order;
};

class GgufSink final : public ModelSink {
 public:
  explicit GgufSink(GgufPlan plan) {
    const auto groups = split(plan);
    for (size_t i = 0; i < groups.size(); ++i) {
      GgufMetadata metadata = i == 0 ? plan.metadata : GgufMetadata{};
      if (groups.size() > 1) {
        metadata.push_back({"split.no", GgufValue::u16(static_cast<uint16_t>(i))});
        metadata.push_back({"split.count", GgufValue::u16(static_cast<uint16_t>(groups.size()))});
        metadata.push_back({"split.tensors.count", GgufValue::i32(static_cast<int32_t>(plan.tensors.size()))});
      }
      std::vector<GgufTensorSpec> gguf;
      GgufFilePlan file;
      for (const GgufSinkTensor* t : groups[i]) {
        gguf.push_back({t->gguf_name, t->spec.dtype, t->spec.shape});
        file.order.push_back(t->spec);
      }
      const auto infos = gguf_tensor_infos(gguf, kGgufAlignment);
      file.header = gguf_header(metadata, infos, kGgufAlignment);
      uint64_t bytes = file.header.size();
      for (const auto& info : infos) bytes += info.bytes + gguf_padding(info.bytes, kGgufAlignment);
      const std::string name = groups.size() == 1 ? plan.stem + ".gguf"
                                                  : fmt::format("{}-{:05d}-of-{:05d}.gguf", plan.stem, i + 1, groups.size());
      files_.push_back({name, file.order, bytes});
      plans_.push_back(std::move(file));
    }
  }

  const std::vector<SinkFile>& files() const override { return files_; }

  std::unique_ptr<TensorFileWriter> open(size_t i, const fs::path& dir) const override {
    return std::make_unique<GgufWriter>((dir / files_.at(i).name).string(), plans_[i].header, plans_[i].order,
                                        files_[i].bytes);
  }

  // Complete when the size is as planned and the header is byte for byte the planned one.
  bool verify(size_t i, const fs::path& dir) const override {
    const fs::path file = dir / files_.at(i).name;
    std::error_code ec;
    if (!fs::is_regular_file(file, ec) || fs::file_size(file, ec) != files_[i].bytes || ec) return false;
    const std::string& header = plans_[i].header;
    std::string found(header.size(), '\0');
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    const bool read = ::pread(fd, found.data(), found.size(), 0) == static_cast<ssize_t>(found.size());
    ::close(fd);
    return read && found == header;
  }

  void finish(const StagingDir&) const override {}
  bool is_model_folder() const override { return false; }

 private:
  static std::vector<std::vector<const GgufSinkTensor*>> split(const GgufPlan& plan) {
    std::vector<std::vector<const GgufSinkTensor*>> groups(1);
    uint64_t bytes = 0;
    for (const auto& t : plan.tensors) {
      const uint64_t size = t.spec.byte_size() + gguf_padding(t.spec.byte_size(), kGgufAlignment);
      if (plan.max_file_bytes > 0 && !groups.back().empty() && bytes + size > plan.max_file_bytes) {
        groups.emplace_back();
        bytes = 0;
      }
      groups.back().push_back(&t);
      bytes += size;
    }
    return groups;
  }

  std::vector<GgufFilePlan> plans_;
  std::vector<SinkFile> files_;
};

}  // namespace

uint64_t ModelSink::total_bytes() const {
  uint64_t n = 0;
  for (const auto& f : files()) n += f.bytes;
  return n;
}

std::unique_ptr<ModelSink> gguf_sink(GgufPlan plan) { return std::make_unique<GgufSink>(std::move(plan)); }

std::unique_ptr<ModelSink> safetensors_sink(const std::vector<TensorSpec>& tensors, const Metadata& metadata,
                                            uint64_t max_shard_bytes) {
  return std::make_unique<SafetensorsSink>(tensors, metadata, max_shard_bytes);
}

}  // namespace rvec
