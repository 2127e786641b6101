// Opening the files rvec reads and writes: regular files only.
//
// A FIFO where rvec expects a file blocks open() until a writer appears, which
// may be never; a device feeds bytes without end. So every file rvec opens by
// a name it was given goes through open_regular_file(): it opens with
// O_NONBLOCK (opening a FIFO cannot block), fstat()s the descriptor it got,
// refuses anything that is not a regular file with one line naming the file
// and what it is,
//
//   st/pre/model.safetensors: not a regular file (a FIFO)
//
// and clears O_NONBLOCK again, so reads and writes on the returned descriptor
// behave as usual. Symbolic links are followed (Hugging Face caches link
// every file to a blob).
//
// Thread-safety: the functions keep no state; a FileDescriptor or LineReader
// belongs to one thread at a time.
#pragma once

#include <fcntl.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace rvec {

// An owned file descriptor, closed on destruction. Move-only.
class FileDescriptor {
 public:
  FileDescriptor() = default;
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(FileDescriptor&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  FileDescriptor& operator=(FileDescriptor&& other) noexcept;
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor();

  int get() const { return fd_; }
  // Hands the descriptor to the caller, who then closes it.
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_ = -1;
};

// Opens `path` with open(2) `flags` (O_RDONLY; or O_WRONLY | O_CREAT | ...
// for an output, created with `mode`) if it is, or becomes, a regular file.
// Errors: a path that exists but is not a regular file is a bad input (a
// usage error when opened for writing: it is an output path); any other
// failure is an I/O error "<path>: cannot open: <reason>".
FileDescriptor open_regular_file(const std::string& path, int flags = O_RDONLY, mode_t mode = 0644);

// Reads a whole regular file; fails clearly if it is larger than `max_bytes`.
std::string read_small_file(const std::string& path, uint64_t max_bytes);

// Creates or truncates the regular file `path` and writes `content` to it.
void write_regular_file(const std::string& path, std::string_view content);

// Copies the regular file `source` to `destination` (created or truncated).
void copy_regular_file(const std::string& source, const std::string& destination);

// Refuses, as open_regular_file() would, a `path` that exists but is not a
// regular file (for an early check of files that are opened later).
void check_regular_if_present(const std::string& path);

// Writes all of `data` to `fd` (retrying short writes); errors name `path`.
void write_all(int fd, std::span<const std::byte> data, const std::string& path);

// Reads exactly out.size() bytes at `offset` of `fd` with pread (retrying
// short reads); a file that ends first is a bad input naming `path` and the
// byte ("it shrank while rvec was reading it"): callers check sizes first.
void read_exactly_at(int fd, std::span<std::byte> out, uint64_t offset, const std::string& path);

// Reads a regular file line by line without holding it whole (JSONL files of
// any size). Lines are returned without their '\n'; a last line without one
// is returned too.
class LineReader {
 public:
  explicit LineReader(const std::string& path);
  // The next line into `line`; false at the end of the file.
  bool next(std::string& line);

 private:
  bool fill();

  std::string path_;
  FileDescriptor fd_;
  std::string buffer_;
  size_t at_ = 0;
  bool end_ = false;
};

}  // namespace rvec
