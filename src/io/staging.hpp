// Atomic creation of an output folder.
//
// A folder is assembled under `<parent>/.<name>.rvec-partial/` next to its
// destination (same file system, so the final rename is atomic) and renamed
// into place by commit() only after every file in it is complete and synced.
// An interrupted run therefore never leaves anything at the destination that
// looks like a finished model; the hidden partial folder is reused (and its
// verified files kept) when the same command runs again.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace rvec {

class StagingDir {
 public:
  // Creates (or, with `resume`, reopens) the partial folder for `destination`.
  // Fails if `destination` exists, unless `overwrite`.
  StagingDir(std::filesystem::path destination, bool overwrite, bool resume = false);

  const std::filesystem::path& destination() const { return destination_; }
  const std::filesystem::path& path() const { return staging_; }
  std::filesystem::path file(const std::string& name) const { return staging_ / name; }

  // Writes a small text file into the folder (synced).
  void write_text(const std::string& name, const std::string& content) const;
  // Copies a file into the folder (synced).
  void copy_in(const std::filesystem::path& source, const std::string& name) const;

  // fsyncs the folder, renames it to the destination, fsyncs the parent.
  void commit();
  // For an output that is files rather than a folder (a GGUF model): renames
  // each named file of the partial folder into the destination's parent,
  // replacing a file of that name, the first name last (so that whoever opens
  // the first finds the rest), and fsyncs the parent. The partial folder
  // stays, with what else it holds (markers), until remove().
  void commit_files(const std::vector<std::string>& names);
  // Removes the partial folder and everything in it. Never fails.
  void remove();

 private:
  std::filesystem::path destination_;
  std::filesystem::path staging_;
  bool overwrite_;
};

// Holds the right to write `destination` for as long as it lives: an
// exclusive flock on `<parent>/.<name>.rvec-lock`, created if need be (with
// the parent folders) and removed by the destructor, with the folders it
// made when they are still empty. A second rvec writing
// the same output, whose files and markers would mix with the first's, is
// refused instead. Lifetime: take it before deciding what to keep of the
// partial folder and keep it until the output is committed. Not copyable;
// one per output.
class OutputLock {
 public:
  explicit OutputLock(const std::filesystem::path& destination);
  ~OutputLock();

  // Removes the lock file of `destination` when a killed run left it and no
  // one holds it; for an output a run finds complete and will not write.
  // Never fails: a file it cannot remove stays.
  static void remove_stale(const std::filesystem::path& destination);
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;

 private:
  void remove_created_folders() const;

  std::filesystem::path path_;
  int fd_ = -1;
  std::vector<std::filesystem::path> created_;  // folders made for the lock file, deepest first
};

// Lock file used for `destination`.
std::filesystem::path lock_path_for(const std::filesystem::path& destination);

// Partial folder name used for `destination`.
std::filesystem::path staging_path_for(const std::filesystem::path& destination);

// fsync a file or folder by path.
void sync_path(const std::filesystem::path& path);

// Free bytes available to an unprivileged writer at `path` (or its nearest
// existing parent).
uint64_t free_bytes_at(const std::filesystem::path& path);

}  // namespace rvec
