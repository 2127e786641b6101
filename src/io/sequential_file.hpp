// Writing one file front to back at disk speed.
//
// Appended bytes are gathered in an aligned 8 MiB chunk. Each full chunk goes
// to the disk with O_DIRECT where the file system allows it: no copy into the
// page cache and no writeback throttling, which on a virtual disk doubles the
// write rate of a large output. Where O_DIRECT is refused (tmpfs, some
// network file systems) or not wanted, chunks go through the page cache
// instead, with writeback started every 64 MiB so dirty pages never pile up.
// The last, partial chunk always goes through the page cache; finish()
// then syncs the whole file. A short or failed direct write falls back to
// the page cache for the rest, so a full disk reads as ENOSPC like any write.
//
// Lifetime: finish() must be called for the file to be complete; destroying
// the object first leaves a truncated file. Not thread-safe: one writer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace rvec {

class SequentialFile {
 public:
  enum class Mode { kDirectIfPossible, kPageCache };

  // Creates (or truncates) the file.
  explicit SequentialFile(std::string path, Mode mode = Mode::kDirectIfPossible);
  ~SequentialFile();
  SequentialFile(const SequentialFile&) = delete;
  SequentialFile& operator=(const SequentialFile&) = delete;

  void append(std::span<const std::byte> bytes);
  // Writes what is left, extends the file to `size` bytes if it is shorter
  // (the rest reads as zeros), syncs and closes it.
  void finish(uint64_t size);

  // True while full chunks go to the disk with O_DIRECT.
  bool direct() const { return direct_fd_ >= 0; }
  const std::string& path() const { return path_; }

 private:
  void write_chunk();
  void write_buffered(const std::byte* data, size_t size, uint64_t at);

  std::string path_;
  int fd_ = -1;
  int direct_fd_ = -1;
  std::byte* chunk_ = nullptr;
  size_t used_ = 0;
  uint64_t offset_ = 0;             // bytes written so far, chunk_ not included
  uint64_t writeback_started_ = 0;  // page-cache mode: bytes whose writeback has begun
};

}  // namespace rvec
