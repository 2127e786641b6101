// Reading safetensors files: `[u64 LE header length N][N bytes JSON][data]`.
//
// Nothing in a file is trusted. open_safetensors() validates the whole header
// (every rule of the safetensors reference plus rvec's stricter ones, see
// docs/safetensors-validation.md) before any tensor is exposed, so code that
// holds a SafetensorsFile may rely on: names unique, non-empty and free of
// control characters; every tensor's byte range inside the file, sized exactly
// for its dtype and shape; ranges contiguous from the start of the data
// section to the end of the file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "numeric/dtype.hpp"

namespace rvec {

inline constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<uint64_t> shape;
  uint64_t begin = 0;  // byte offsets relative to the data section
  uint64_t end = 0;

  uint64_t byte_size() const { return end - begin; }
  uint64_t element_count() const;  // overflow already ruled out by validation
};

struct SafetensorsHeader {
  uint64_t header_bytes = 0;  // N, the JSON length including padding
  uint64_t json_hash = 0;     // FNV-1a 64 of the header bytes (provenance, resume)
  std::vector<TensorInfo> tensors;  // in data order (ascending offsets)
  std::map<std::string, std::string> metadata;

  uint64_t data_start() const { return 8 + header_bytes; }
  const TensorInfo* find(std::string_view name) const;
};

// Validates the first 8 bytes of a file of `file_size` bytes and returns N.
// `origin` names the file in error messages.
uint64_t parse_header_length(std::span<const std::byte> first8, uint64_t file_size,
                             std::string_view origin);

// Validates the JSON header (N bytes) of a file of `file_size` bytes.
SafetensorsHeader parse_header(std::string_view json, uint64_t file_size,
                               std::string_view origin);

// Validates a whole in-memory safetensors file (used by tests and the fuzzer).
SafetensorsHeader parse_safetensors_buffer(std::span<const std::byte> file,
                                           std::string_view origin);

// Bytes (elements * bits / 8) of a tensor, or an error naming it on overflow
// or a sub-byte size that does not end on a byte boundary.
uint64_t checked_byte_size(DType dtype, std::span<const uint64_t> shape,
                           std::string_view origin, std::string_view name);

// An open, validated safetensors file. Reads go through pread into caller
// buffers, so memory stays bounded whatever the file size; map() gives a
// zero-copy read-only view when a whole tensor is wanted at once.
// Lifetime: views from map() live as long as the SafetensorsFile.
// Thread-safety: read(), prefetch() and check_unchanged() may be called from
// several threads at once (pread, no shared position). map() may not: its
// first call creates the mapping unsynchronised; call it once before sharing
// the file between threads, or from one thread only.
class SafetensorsFile {
 public:
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const SafetensorsHeader& header() const { return header_; }
  uint64_t file_size() const { return file_size_; }
  // Last modification time (ns since the epoch) when the file was opened.
  uint64_t modified_ns() const { return modified_ns_; }

  // Copies bytes [offset, offset + out.size()) of `tensor` into `out`.
  // Fails clearly if the file shrank or cannot be read.
  void read(const TensorInfo& tensor, uint64_t offset, std::span<std::byte> out) const;

  // Asks the kernel to start reading bytes [offset, offset + length) of
  // `tensor` in the background (clamped to the tensor), so a later read()
  // finds them in the page cache: overlaps disk reads with computation.
  void prefetch(const TensorInfo& tensor, uint64_t offset, uint64_t length) const;

  // The tensor's bytes in a read-only mapping of the whole file.
  std::span<const std::byte> map(const TensorInfo& tensor) const;

  // Fails if the file's size or modification time changed since it was opened.
  void check_unchanged() const;

 private:
  SafetensorsFile(std::string path, int fd, uint64_t size, SafetensorsHeader header);

  std::string path_;
  int fd_;
  uint64_t file_size_;
  uint64_t modified_ns_;
  SafetensorsHeader header_;
  mutable const std::byte* mapping_ = nullptr;
};

}  // namespace rvec
