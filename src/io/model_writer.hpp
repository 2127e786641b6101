// Writes a Hugging Face model folder: sharded safetensors plus index, with
// auxiliary files, assembled in a StagingDir and committed atomically.
#pragma once

#include <filesystem>
#include <memory>
#include <vector>

#include "io/staging.hpp"
#include "io/writer.hpp"

namespace rvec {

struct ModelWriteOptions {
  uint64_t max_shard_bytes = kDefaultMaxShardBytes;
  Metadata metadata;  // goes into every shard's __metadata__ (plus "format": "pt")
  bool overwrite = false;
  bool resume = false;
};

class ModelWriter {
 public:
  // `tensors` in state-dict order (the order shards are cut in).
  ModelWriter(std::filesystem::path destination, const std::vector<TensorSpec>& tensors,
              ModelWriteOptions options);

  const std::vector<ShardPlan>& shards() const { return shards_; }
  const StagingDir& staging() const { return staging_; }
  const Metadata& metadata() const { return options_.metadata; }

  // Starts writing shard `i`; the writer's order() says in which order to append.
  std::unique_ptr<SafetensorsWriter> open_shard(size_t i) const;

  // Writes the index (when there are several shards) and renames into place.
  void commit();

 private:
  ModelWriteOptions options_;
  StagingDir staging_;
  std::vector<ShardPlan> shards_;
};

}  // namespace rvec
