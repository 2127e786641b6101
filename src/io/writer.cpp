#include "io/writer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "base/error.hpp"

namespace rvec {
namespace {

constexpr size_t kWriteBufferBytes = 8 << 20;
// Appends at least this large skip the buffer (one copy less on the hot path).
constexpr size_t kDirectWriteBytes = 1 << 20;
// Writeback is started every this many bytes, so dirty pages never pile up
// (the kernel would otherwise stall the writer in large bursts) and the final
// fsync has little left to do.
constexpr uint64_t kWritebackChunkBytes = 64 << 20;

void write_all(int fd, const std::byte* data, size_t size, const std::string& path) {
  while (size > 0) {
    const ssize_t done = ::write(fd, data, size);
    if (done < 0) {
      if (errno == EINTR) continue;
      fail_errno(fmt::format("{}: write failed", path));
    }
    data += done;
    size -= static_cast<size_t>(done);
  }
}

}  // namespace

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

OutputFile::OutputFile(std::string path, uint64_t total_size) : path_(std::move(path)), total_size_(total_size) {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail_errno(fmt::format("{}: cannot create", path_));
  buffer_.reserve(kWriteBufferBytes);
}

OutputFile::~OutputFile() {
  if (fd_ >= 0) ::close(fd_);
}

void OutputFile::write_through(std::span<const std::byte> bytes) {
  write_all(fd_, bytes.data(), bytes.size(), path_);
  file_offset_ += bytes.size();
  if (file_offset_ - writeback_started_ >= kWritebackChunkBytes) {
    ::sync_file_range(fd_, static_cast<off_t>(writeback_started_), static_cast<off_t>(file_offset_ - writeback_started_),
                      SYNC_FILE_RANGE_WRITE);
    writeback_started_ = file_offset_;
  }
}

void OutputFile::flush_buffer() {
  write_through(buffer_);
  buffer_.clear();
}

void OutputFile::append(std::span<const std::byte> bytes) {
  if (bytes.size() > total_size_ - written_) {
    fail(ErrorKind::kBadInput, "{}: more data than planned ({} bytes)", path_, total_size_);
  }
  written_ += bytes.size();
  if (bytes.size() < kDirectWriteBytes && buffer_.size() + bytes.size() <= kWriteBufferBytes) {
    buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
    return;
  }
  flush_buffer();
  if (bytes.size() >= kDirectWriteBytes) {
    write_through(bytes);
  } else {
    buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
  }
}

void OutputFile::finish() {
  if (written_ != total_size_) {
    fail(ErrorKind::kBadInput, "{}: only {} of {} bytes were written", path_, written_, total_size_);
  }
  flush_buffer();
  if (::fsync(fd_) != 0) fail_errno(fmt::format("{}: fsync failed", path_));
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail_errno(fmt::format("{}: close failed", path_));
}

void OutputFile::finish_sparse() {
  flush_buffer();
  if (::ftruncate(fd_, static_cast<off_t>(total_size_)) != 0) fail_errno(fmt::format("{}: cannot extend", path_));
  written_ = total_size_;
  finish();
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
