// Model sinks: where the tensors of an output model go, whatever the format.
//
// A sink plans the output's files and their exact sizes up front from the
// tensor list (names, dtypes, shapes in state-dict order), then writes them
// one at a time: open(i) returns a TensorFileWriter that takes the bytes of
// file i's tensors, appended in the order it declares. verify(i) says whether
// a file left by an interrupted run is complete as planned (resume), and
// finish() writes what describes the files (the safetensors index). The
// caller owns the folder (a StagingDir) and everything else in it.
//
// Safetensors, sharded like save_pretrained, is the first implementation;
// GGUF (one file, or split files as llama.cpp's gguf-split names them) the
// second.
//
// Thread-safety: a sink is immutable after construction; its methods may be
// called from any thread. A TensorFileWriter is used by one thread at a time.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "io/gguf.hpp"
#include "io/staging.hpp"
#include "io/writer.hpp"

namespace rvec {

// One planned file of an output.
struct SinkFile {
  std::string name;                 // relative to the output folder
  std::vector<TensorSpec> tensors;  // state-dict order (GGUF: file order)
  uint64_t bytes = 0;               // the file's exact size
};

class ModelSink {
 public:
  virtual ~ModelSink() = default;

  // The files in the order they are written.
  virtual const std::vector<SinkFile>& files() const = 0;
  // Starts writing file `i` in folder `dir`.
  virtual std::unique_ptr<TensorFileWriter> open(size_t i, const std::filesystem::path& dir) const = 0;
  // True if `dir` holds file `i` complete: exact size, and a header that
  // validates with exactly the planned tensors. Never throws.
  virtual bool verify(size_t i, const std::filesystem::path& dir) const = 0;
  // Writes the files that describe the data files, once all are written.
  virtual void finish(const StagingDir& dir) const = 0;
  // True: the files form a model folder, with config, tokenizer and model card
  // beside them (safetensors). False: the files are the whole model and are
  // placed beside each other where the output is named (GGUF).
  virtual bool is_model_folder() const { return true; }

  uint64_t total_bytes() const;
};

// Sharded safetensors: shards cut in state-dict order at `max_shard_bytes`,
// `metadata` in every shard's header, an index when there is more than one.
std::unique_ptr<ModelSink> safetensors_sink(const std::vector<TensorSpec>& tensors, const Metadata& metadata,
                                            uint64_t max_shard_bytes);

// One tensor of a GGUF output: the tensor as the executor writes it (the
// Hugging Face name and shape, the type it has in the file) and its GGUF name.
struct GgufSinkTensor {
  TensorSpec spec;
  std::string gguf_name;
};

struct GgufPlan {
  std::string stem;        // "model": model.gguf, or model-0000k-of-0000n.gguf when split
  GgufMetadata metadata;   // keys of the (first) file; split files add split.*
  std::vector<GgufSinkTensor> tensors;  // in file order
  uint64_t max_file_bytes = 0;          // tensor bytes per file before a split; 0: one file
};

// GGUF files cut like gguf-split --split-max-size: a file is closed when the
// next tensor would take its padded tensor data past the limit (a larger
// tensor gets a file of its own). Split files carry split.no, split.count and
// split.tensors.count; only the first carries the model's keys.
std::unique_ptr<ModelSink> gguf_sink(GgufPlan plan);

}  // namespace rvec
