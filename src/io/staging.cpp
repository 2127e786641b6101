#include "io/staging.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "base/error.hpp"
#include "base/regular_file.hpp"

namespace rvec {
namespace fs = std::filesystem;

fs::path staging_path_for(const fs::path& destination) {
  const fs::path absolute = fs::absolute(destination).lexically_normal();
  fs::path name = absolute.filename();
  if (name.empty()) name = absolute.parent_path().filename();
  const fs::path parent = absolute.filename().empty() ? absolute.parent_path().parent_path() : absolute.parent_path();
  return parent / ("." + name.string() + ".rvec-partial");
}

fs::path lock_path_for(const fs::path& destination) {
  fs::path path = staging_path_for(destination);
  return path.replace_extension(".rvec-lock");
}

namespace {

// Whether `fd` is still the file at `path` (its last holder removes it).
bool still_linked(int fd, const fs::path& path) {
  struct stat held {}, named {};
  return ::fstat(fd, &held) == 0 && ::stat(path.c_str(), &named) == 0 && held.st_dev == named.st_dev &&
         held.st_ino == named.st_ino;
}

}  // namespace

OutputLock::OutputLock(const fs::path& destination) : path_(lock_path_for(destination)) {
  std::error_code ec;
  for (fs::path folder = path_.parent_path(); !folder.empty() && !fs::exists(folder, ec); folder = folder.parent_path()) {
    created_.push_back(folder);
    if (folder == folder.parent_path()) break;
  }
  fs::create_directories(path_.parent_path(), ec);
  if (ec) fail(ErrorKind::kIo, "{}: cannot create folder: {}", path_.parent_path().string(), ec.message());
  for (;;) {
    // Read-only is enough for flock, and opens a lock file another user's killed run left.
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd_ < 0) fail_errno(fmt::format("{}: cannot open the output's lock file", path_.string()));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      const int error = errno;
      ::close(fd_);
      if (error == EWOULDBLOCK) {
        remove_created_folders();
        fail(ErrorKind::kUsage, "{}: another rvec run is writing this output (it holds {}); let it finish or choose another output",
             destination.string(), path_.filename().string());
      }
      errno = error;
      fail_errno(fmt::format("{}: cannot lock", path_.string()));
    }
    if (still_linked(fd_, path_)) return;
    ::close(fd_);  // its holder removed it as we opened it: take the new one
  }
}

OutputLock::~OutputLock() {
  ::unlink(path_.c_str());
  ::close(fd_);
  remove_created_folders();
}

void OutputLock::remove_stale(const fs::path& destination) {
  const fs::path path = lock_path_for(destination);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return;
  if (::flock(fd, LOCK_EX | LOCK_NB) == 0 && still_linked(fd, path)) ::unlink(path.c_str());
  ::close(fd);
}

// The folders made for the lock file go again if they are empty (a refused
// or failed run); a committed output keeps its own.
void OutputLock::remove_created_folders() const {
  for (const auto& folder : created_) {
    if (::rmdir(folder.c_str()) != 0) return;
  }
}

void sync_path(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail_errno(fmt::format("{}: cannot open to sync", path.string()));
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) fail_errno(fmt::format("{}: fsync failed", path.string()));
}

uint64_t free_bytes_at(const fs::path& path) {
  fs::path probe = fs::absolute(path);
  std::error_code ec;
  while (!fs::exists(probe, ec) && probe.has_parent_path() && probe != probe.parent_path()) {
    probe = probe.parent_path();
  }
  struct statvfs st {};
  if (::statvfs(probe.c_str(), &st) != 0) fail_errno(fmt::format("{}: cannot read free space", probe.string()));
  return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
}

StagingDir::StagingDir(fs::path destination, bool overwrite, bool resume)
    : destination_(fs::absolute(std::move(destination)).lexically_normal()),
      staging_(staging_path_for(destination_)),
      overwrite_(overwrite) {
  if (destination_.filename().empty()) destination_ = destination_.parent_path();
  std::error_code ec;
  if (fs::exists(destination_, ec) && !overwrite_) {
    fail(ErrorKind::kUsage, "{}: already exists (pass --overwrite to replace it)", destination_.string());
  }
  const fs::path parent = staging_.parent_path();
  fs::create_directories(parent, ec);
  if (ec) fail(ErrorKind::kIo, "{}: cannot create folder: {}", parent.string(), ec.message());
  if (!resume) fs::remove_all(staging_, ec);
  fs::create_directories(staging_, ec);
  if (ec) fail(ErrorKind::kIo, "{}: cannot create folder: {}", staging_.string(), ec.message());
}

void StagingDir::write_text(const std::string& name, const std::string& content) const {
  const fs::path target = file(name);
  write_regular_file(target.string(), content);
  sync_path(target);
}

void StagingDir::copy_in(const fs::path& source, const std::string& name) const {
  copy_regular_file(source.string(), file(name).string());
  sync_path(file(name));
}

void StagingDir::commit() {
  sync_path(staging_);
  std::error_code ec;
  fs::path displaced;
  if (fs::exists(destination_, ec)) {
    displaced = destination_.parent_path() / ("." + destination_.filename().string() + ".rvec-old");
    fs::remove_all(displaced, ec);
    fs::rename(destination_, displaced, ec);
    if (ec) fail(ErrorKind::kIo, "{}: cannot move aside: {}", destination_.string(), ec.message());
  }
  fs::rename(staging_, destination_, ec);
  if (ec) fail(ErrorKind::kIo, "{}: cannot rename into place: {}", destination_.string(), ec.message());
  sync_path(destination_.parent_path());
  if (!displaced.empty()) fs::remove_all(displaced, ec);
}

void StagingDir::commit_files(const std::vector<std::string>& names) {
  std::error_code ec;
  for (auto name = names.rbegin(); name != names.rend(); ++name) {
    const fs::path target = destination_.parent_path() / *name;
    if (fs::is_directory(target, ec)) fail(ErrorKind::kIo, "{}: is a folder; cannot put a file there", target.string());
    fs::rename(file(*name), target, ec);
    if (ec) fail(ErrorKind::kIo, "{}: cannot rename into place: {}", target.string(), ec.message());
  }
  sync_path(destination_.parent_path());
}

void StagingDir::remove() {
  std::error_code ec;
  fs::remove_all(staging_, ec);
}

}  // namespace rvec
