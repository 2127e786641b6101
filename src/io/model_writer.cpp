#include "io/model_writer.hpp"

namespace rvec {

ModelWriter::ModelWriter(std::filesystem::path destination, const std::vector<TensorSpec>& tensors,
                         ModelWriteOptions options)
    : options_(std::move(options)),
      staging_(std::move(destination), options_.overwrite, options_.resume),
      shards_(plan_shards(tensors, options_.max_shard_bytes)) {}

std::unique_ptr<SafetensorsWriter> ModelWriter::open_shard(size_t i) const {
  return std::make_unique<SafetensorsWriter>(staging_.file(shards_.at(i).file_name).string(), shards_[i].tensors,
                                             options_.metadata);
}

void ModelWriter::commit() {
  if (shards_.size() > 1) staging_.write_text("model.safetensors.index.json", index_json(shards_));
  staging_.commit();
}

}  // namespace rvec
