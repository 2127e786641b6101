#include "base/regular_file.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/error.hpp"

namespace rvec {
namespace {

constexpr size_t kChunkBytes = 1 << 16;

const char* file_type_name(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a plain file";
}

[[noreturn]] void refuse_non_regular(const std::string& path, mode_t mode, bool output) {
  fail(output ? ErrorKind::kUsage : ErrorKind::kBadInput, "{}: not a regular file ({})", path, file_type_name(mode));
}

// Reads up to `size` bytes into `out`; 0 at the end of the file.
size_t read_some(int fd, char* out, size_t size, const std::string& path) {
  while (true) {
    const ssize_t got = ::read(fd, out, size);
    if (got >= 0) return static_cast<size_t>(got);
    if (errno != EINTR) fail_errno(fmt::format("{}: cannot read", path));
  }
}

}  // namespace

FileDescriptor& FileDescriptor::operator=(FileDescriptor&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

FileDescriptor::~FileDescriptor() {
  if (fd_ >= 0) ::close(fd_);
}

FileDescriptor open_regular_file(const std::string& path, int flags, mode_t mode) {
  const bool output = (flags & O_ACCMODE) != O_RDONLY;
  FileDescriptor fd(::open(path.c_str(), flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, mode));
  struct stat st {};
  if (fd.get() < 0) {
    // Opening a FIFO that has no reader for writing fails (ENXIO), as does
    // opening a socket, or a folder for writing: say what is there.
    const int err = errno;
    if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) refuse_non_regular(path, st.st_mode, output);
    fail(ErrorKind::kIo, "{}: cannot open: {}", path, std::strerror(err));
  }
  if (::fstat(fd.get(), &st) != 0) fail_errno(fmt::format("{}: cannot stat", path));
  if (!S_ISREG(st.st_mode)) refuse_non_regular(path, st.st_mode, output);
  const int status = ::fcntl(fd.get(), F_GETFL);
  if (status < 0 || ::fcntl(fd.get(), F_SETFL, status & ~O_NONBLOCK) != 0) {
    fail_errno(fmt::format("{}: cannot clear O_NONBLOCK", path));
  }
  return fd;
}

void check_regular_if_present(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) refuse_non_regular(path, st.st_mode, false);
}

std::string read_small_file(const std::string& path, uint64_t max_bytes) {
  const FileDescriptor fd = open_regular_file(path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) fail_errno(fmt::format("{}: cannot stat", path));
  const auto refuse_size = [&](uint64_t size) {
    bad_input("{}: {} bytes, more than the {} allowed for this kind of file", path, size, max_bytes);
  };
  if (static_cast<uint64_t>(st.st_size) > max_bytes) refuse_size(static_cast<uint64_t>(st.st_size));
  std::string text;
  char chunk[kChunkBytes];
  while (const size_t got = read_some(fd.get(), chunk, sizeof chunk, path)) {
    text.append(chunk, got);
    if (text.size() > max_bytes) refuse_size(text.size());  // it grew while rvec read it
  }
  return text;
}

void write_all(int fd, std::span<const std::byte> data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t wrote = ::write(fd, data.data(), data.size());
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote < 0) fail_errno(fmt::format("{}: write failed", path));
    data = data.subspan(static_cast<size_t>(wrote));
  }
}

void read_exactly_at(int fd, std::span<std::byte> out, uint64_t offset, const std::string& path) {
  while (!out.empty()) {
    const ssize_t got = ::pread(fd, out.data(), out.size(), static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) fail_errno(fmt::format("{}: read at byte {}", path, offset));
    if (got == 0) bad_input("{}: file ended at byte {} (it shrank while rvec was reading it)", path, offset);
    out = out.subspan(static_cast<size_t>(got));
    offset += static_cast<uint64_t>(got);
  }
}

void write_regular_file(const std::string& path, std::string_view content) {
  const FileDescriptor fd = open_regular_file(path, O_WRONLY | O_CREAT | O_TRUNC);
  write_all(fd.get(), std::as_bytes(std::span(content)), path);
}

void copy_regular_file(const std::string& source, const std::string& destination) {
  const FileDescriptor in = open_regular_file(source);
  const FileDescriptor out = open_regular_file(destination, O_WRONLY | O_CREAT | O_TRUNC);
  char chunk[kChunkBytes];
  while (const size_t got = read_some(in.get(), chunk, sizeof chunk, source)) {
    write_all(out.get(), std::as_bytes(std::span(chunk, got)), destination);
  }
}

LineReader::LineReader(const std::string& path) : path_(path), fd_(open_regular_file(path)) {}

bool LineReader::fill() {
  if (end_) return false;
  buffer_.erase(0, at_);
  at_ = 0;
  char chunk[kChunkBytes];
  const size_t got = read_some(fd_.get(), chunk, sizeof chunk, path_);
  buffer_.append(chunk, got);
  end_ = got == 0;
  return !end_;
}

bool LineReader::next(std::string& line) {
  size_t newline;
  size_t scanned = 0;  // bytes after at_ already known to hold no '\n'
  while ((newline = buffer_.find('\n', at_ + scanned)) == std::string::npos) {
    scanned = buffer_.size() - at_;
    if (!fill()) {
      if (at_ == buffer_.size()) return false;
      line.assign(buffer_, at_);
      at_ = buffer_.size();
      return true;
    }
  }
  line.assign(buffer_, at_, newline - at_);
  at_ = newline + 1;
  return true;
}

}  // namespace rvec
