// Reading one model tensor block by block, the one way merge, lineage and
// vector statistics stream weights.
//
// read() copies a block of raw elements into the reader's buffer with pread
// and first asks the kernel to fetch the block after it in the background, so
// disk reads overlap the caller's computation; widen() decodes any tile of
// that block to f32. Memory is the reader's one buffer, whatever the model.
//
// Lifetime: the tensor passed to read() must outlive the read; spans returned
// by read() stay valid until the next read(). Not thread-safe: one reader per
// thread (its ModelFolder may be shared: SafetensorsFile reads are pread).
#pragma once

#include <hwy/aligned_allocator.h>

#include <cstddef>
#include <cstdint>
#include <span>

#include "hf/model_folder.hpp"

namespace rvec {

// Passes that share tensors out to the cores, each thread with its readers
// (check --deep, stats), use at most this many threads: more do not read faster.
inline constexpr size_t kMaxReadingThreads = 4;

class TensorBlockReader {
 public:
  // Blocks of up to `block_elements` elements of any dtype up to 4 bytes wide.
  explicit TensorBlockReader(size_t block_elements);

  size_t block_elements() const { return block_elements_; }

  // Raw bytes of elements [first, first + n) of `tensor`, n <= block_elements().
  std::span<const std::byte> read(const ModelTensor& tensor, uint64_t first, size_t n);

  // Like read(), into the caller's buffer (sized for n elements of the tensor's dtype).
  void read_into(const ModelTensor& tensor, uint64_t first, size_t n, std::byte* out);

  // Elements [offset, offset + out.size()) of the last block read(), as f32.
  void widen(size_t offset, std::span<float> out) const;

  // The raw bytes the last read() returned.
  std::span<const std::byte> last_block() const { return last_block_; }

  // read() then widen() of the whole block into the reader's f32 buffer, which the
  // caller may modify until the next read.
  float* read_f32(const ModelTensor& tensor, uint64_t first, size_t n);

  // Bytes read by this reader so far.
  uint64_t bytes_read() const { return bytes_read_; }

 private:
  size_t block_elements_;
  hwy::AlignedFreeUniquePtr<std::byte[]> raw_;
  hwy::AlignedFreeUniquePtr<float[]> values_;  // allocated by the first read_f32()
  const ModelTensor* last_ = nullptr;
  std::span<const std::byte> last_block_;
  uint64_t bytes_read_ = 0;
};

}  // namespace rvec
