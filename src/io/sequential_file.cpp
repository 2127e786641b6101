#include "io/sequential_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/error.hpp"
#include "base/regular_file.hpp"

namespace rvec {
namespace {

constexpr size_t kChunkBytes = 8 << 20;    // a multiple of every block size O_DIRECT may need
constexpr size_t kChunkAlignment = 4096;   // memory alignment O_DIRECT needs
constexpr uint64_t kWritebackBytes = 64 << 20;

// Writes all of [data, data + size) at `offset`; returns the bytes written
// before an error that the caller may recover from (EINVAL from O_DIRECT).
size_t pwrite_some(int fd, const std::byte* data, size_t size, uint64_t offset) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pwrite(fd, data + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

}  // namespace

SequentialFile::SequentialFile(std::string path, Mode mode) : path_(std::move(path)) {
  fd_ = open_regular_file(path_, O_WRONLY | O_CREAT | O_TRUNC).release();
  if (mode == Mode::kDirectIfPossible) direct_fd_ = ::open(path_.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
  chunk_ = static_cast<std::byte*>(std::aligned_alloc(kChunkAlignment, kChunkBytes));
  if (chunk_ == nullptr) fail(ErrorKind::kIo, "{}: cannot allocate a write buffer", path_);
}

SequentialFile::~SequentialFile() {
  if (direct_fd_ >= 0) ::close(direct_fd_);
  if (fd_ >= 0) ::close(fd_);
  std::free(chunk_);
}

void SequentialFile::append(std::span<const std::byte> bytes) {
  while (!bytes.empty()) {
    const size_t n = std::min(bytes.size(), kChunkBytes - used_);
    std::memcpy(chunk_ + used_, bytes.data(), n);
    used_ += n;
    bytes = bytes.subspan(n);
    if (used_ == kChunkBytes) write_chunk();
  }
}

void SequentialFile::write_chunk() {
  size_t direct = 0;
  if (direct_fd_ >= 0) {
    direct = pwrite_some(direct_fd_, chunk_, used_, offset_);
    if (direct < used_) {  // refused or cut short: the page cache takes the rest, and all that follows
      ::close(direct_fd_);
      direct_fd_ = -1;
    }
  }
  write_buffered(chunk_ + direct, used_ - direct, offset_ + direct);
  offset_ += used_;
  used_ = 0;
}

void SequentialFile::write_buffered(const std::byte* data, size_t size, uint64_t at) {
  if (size == 0) return;
  if (pwrite_some(fd_, data, size, at) != size) fail_errno(fmt::format("{}: write failed", path_));
  if (at + size - writeback_started_ >= kWritebackBytes) {
    ::sync_file_range(fd_, static_cast<off_t>(writeback_started_), static_cast<off_t>(at + size - writeback_started_),
                      SYNC_FILE_RANGE_WRITE);
    writeback_started_ = at + size;
  }
}

void SequentialFile::finish(uint64_t size) {
  write_buffered(chunk_, used_, offset_);  // the tail's size need not suit O_DIRECT
  offset_ += used_;
  used_ = 0;
  if (offset_ < size && ::ftruncate(fd_, static_cast<off_t>(size)) != 0) {
    fail_errno(fmt::format("{}: cannot extend", path_));
  }
  if (::fsync(fd_) != 0) fail_errno(fmt::format("{}: fsync failed", path_));
  if (direct_fd_ >= 0) ::close(direct_fd_);
  direct_fd_ = -1;
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail_errno(fmt::format("{}: close failed", path_));
}

}  // namespace rvec
