// Writing safetensors files and sharded model folders, streaming.
//
// The header is computed from the planned tensors up front, then data is
// appended tensor by tensor (in any number of pieces), so a writer never holds
// more than the caller's buffer. Files match what `safetensors.serialize` and
// transformers' `save_pretrained` produce: tensors ordered by dtype alignment
// (largest first) then name, compact JSON with __metadata__ first (always
// carrying "format": "pt"), the header padded with spaces to a multiple of 8.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "io/sequential_file.hpp"
#include "numeric/dtype.hpp"

namespace rvec {

struct TensorSpec {
  std::string name;
  DType dtype;
  std::vector<uint64_t> shape;
  uint64_t byte_size() const;
};

using Metadata = std::map<std::string, std::string>;

// `tensors` reordered as safetensors lays them out in a file.
std::vector<TensorSpec> safetensors_order(std::vector<TensorSpec> tensors);

// The padded JSON header for tensors already in file order. Adds "format": "pt".
std::string build_header(const std::vector<TensorSpec>& ordered, const Metadata& metadata);

// One file being written. finish() must be called for the file to be
// complete; a writer destroyed before that leaves a truncated file.
class TensorFileWriter {
 public:
  virtual ~TensorFileWriter() = default;
  // The file's tensors in the order their bytes must be appended.
  virtual const std::vector<TensorSpec>& order() const = 0;
  virtual void append(std::span<const std::byte> bytes) = 0;
  // Checks every byte was written, flushes, syncs and closes.
  virtual void finish() = 0;
  // Finishes with the data left as a hole that reads as zeros (shape-only test models).
  virtual void finish_sparse() = 0;
  virtual uint64_t total_size() const = 0;
};

// A file written front to back to exactly `total_size` bytes through a
// SequentialFile (O_DIRECT chunks where the file system allows them).
// Not thread-safe: one writer. Lifetime: finish() must be called for the file to be complete; a file
// destroyed before that is left truncated (the staging folder hides it).
class OutputFile {
 public:
  // Creates the file. `mode`: see SequentialFile.
  OutputFile(std::string path, uint64_t total_size, SequentialFile::Mode mode = SequentialFile::Mode::kDirectIfPossible);
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  const std::string& path() const { return path_; }
  uint64_t total_size() const { return total_size_; }
  uint64_t written() const { return written_; }

  // Fails (naming the file) if the bytes would pass the planned size.
  void append(std::span<const std::byte> bytes);
  // Checks every byte was written, flushes, fsyncs and closes.
  void finish();
  // Extends the file to its full size without writing the rest (a sparse
  // file whose remaining bytes read as zeros), then finishes.
  void finish_sparse();
  // True while the data goes to the disk with O_DIRECT.
  bool direct() const { return file_.direct(); }

 private:
  std::string path_;
  uint64_t total_size_ = 0;
  uint64_t written_ = 0;
  SequentialFile file_;
};

// Writes one safetensors file.
class SafetensorsWriter final : public TensorFileWriter {
 public:
  SafetensorsWriter(std::string path, std::vector<TensorSpec> tensors, const Metadata& metadata);

  // The tensors in the order their data must be appended.
  const std::vector<TensorSpec>& order() const override { return order_; }
  uint64_t total_size() const override { return file_->total_size(); }

  void append(std::span<const std::byte> bytes) override { file_->append(bytes); }
  void finish() override { file_->finish(); }
  // For shape-only test models: the tensors read as zeros.
  void finish_sparse() override { file_->finish_sparse(); }

 private:
  std::vector<TensorSpec> order_;
  std::unique_ptr<OutputFile> file_;
};

// One output file of a sharded save.
struct ShardPlan {
  std::string file_name;
  std::vector<TensorSpec> tensors;  // state-dict order
  uint64_t tensor_bytes = 0;
};

// Greedy split in state-dict order like save_pretrained: a shard is closed
// when the next tensor would push it past `max_shard_bytes`; a tensor larger
// than the limit gets a shard of its own. One shard is named
// model.safetensors, several model-0000k-of-0000n.safetensors.
std::vector<ShardPlan> plan_shards(const std::vector<TensorSpec>& tensors, uint64_t max_shard_bytes);

// model.safetensors.index.json for a plan (indent 2, sorted keys).
std::string index_json(const std::vector<ShardPlan>& shards);

inline constexpr uint64_t kDefaultMaxShardBytes = 5'000'000'000;

}  // namespace rvec
