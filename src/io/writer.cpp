#include "io/writer.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "base/error.hpp"

namespace rvec {

uint64_t TensorSpec::byte_size() const {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;
  return dtype_bytes(dtype, n);
}

std::vector<TensorSpec> safetensors_order(std::vector<TensorSpec> tensors) {
  std::stable_sort(tensors.begin(), tensors.end(), [](const TensorSpec& a, const TensorSpec& b) {
    const unsigned align_a = dtype_bits(a.dtype), align_b = dtype_bits(b.dtype);
    return align_a != align_b ? align_a > align_b : a.name < b.name;
  });
  return tensors;
}

std::string build_header(const std::vector<TensorSpec>& ordered, const Metadata& metadata) {
  nlohmann::ordered_json header;
  auto& meta = header["__metadata__"];
  meta = nlohmann::ordered_json::object();
  meta["format"] = "pt";
  for (const auto& [key, value] : metadata) meta[key] = value;
  uint64_t offset = 0;
  for (const auto& t : ordered) {
    const uint64_t size = t.byte_size();
    header[t.name] = {{"dtype", std::string(dtype_name(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + size}}};
    offset += size;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

OutputFile::OutputFile(std::string path, uint64_t total_size, SequentialFile::Mode mode)
    : path_(std::move(path)), total_size_(total_size), file_(path_, mode) {}

void OutputFile::append(std::span<const std::byte> bytes) {
  if (bytes.size() > total_size_ - written_) {
    fail(ErrorKind::kBadInput, "{}: more data than planned ({} bytes)", path_, total_size_);
  }
  written_ += bytes.size();
  file_.append(bytes);
}

void OutputFile::finish() {
  if (written_ != total_size_) {
    fail(ErrorKind::kBadInput, "{}: only {} of {} bytes were written", path_, written_, total_size_);
  }
  file_.finish(total_size_);
}

void OutputFile::finish_sparse() {
  written_ = total_size_;
  file_.finish(total_size_);
}

SafetensorsWriter::SafetensorsWriter(std::string path, std::vector<TensorSpec> tensors, const Metadata& metadata)
    : order_(safetensors_order(std::move(tensors))) {
  const std::string header = build_header(order_, metadata);
  uint64_t data = 0;
  for (const auto& t : order_) data += t.byte_size();
  file_ = std::make_unique<OutputFile>(std::move(path), 8 + header.size() + data);
  std::byte length[8];
  uint64_t n = header.size();
  for (auto& b : length) {
    b = static_cast<std::byte>(n & 0xFF);
    n >>= 8;
  }
  file_->append(length);
  file_->append(std::as_bytes(std::span(header)));
}

std::vector<ShardPlan> plan_shards(const std::vector<TensorSpec>& tensors, uint64_t max_shard_bytes) {
  std::vector<ShardPlan> shards;
  for (const auto& t : tensors) {
    const uint64_t size = t.byte_size();
    if (shards.empty() || (!shards.back().tensors.empty() && shards.back().tensor_bytes + size > max_shard_bytes)) {
      shards.emplace_back();
    }
    shards.back().tensors.push_back(t);
    shards.back().tensor_bytes += size;
  }
  if (shards.empty()) shards.emplace_back();
  for (size_t i = 0; i < shards.size(); ++i) {
    shards[i].file_name = shards.size() == 1
                              ? "model.safetensors"
                              : fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, shards.size());
  }
  return shards;
}

std::string index_json(const std::vector<ShardPlan>& shards) {
  nlohmann::json index;
  uint64_t total = 0;
  index["weight_map"] = nlohmann::json::object();
  for (const auto& shard : shards) {
    total += shard.tensor_bytes;
    for (const auto& t : shard.tensors) index["weight_map"][t.name] = shard.file_name;
  }
  index["metadata"] = {{"total_size", total}};
  return index.dump(2) + "\n";
}

}  // namespace rvec
