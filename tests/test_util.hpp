// Helpers shared by rvec's tests: temporary folders, raw files, and
// hand-built safetensors files whose header text the test controls exactly.
#pragma once

#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace rvec::test {

// A fresh folder under the system temp dir, removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

void write_file(const std::filesystem::path& path, std::string_view bytes);
std::string read_file(const std::filesystem::path& path);
// The names of the files and folders in `dir` (not below it): what an output
// folder holds, what a refused or resumed run left beside its outputs.
std::set<std::string> file_names(const std::filesystem::path& dir);

// [u64 LE len(header)][header][data]: no padding or validation of any kind.
std::string raw_safetensors(std::string_view header, std::string_view data);
std::vector<std::byte> as_bytes(std::string_view text);

// Writes the 16-bit value `bits` (a bf16 NaN, 0x7FC0, by default) over the
// first `count` elements of the 16-bit tensor `tensor` in the safetensors
// file `model_file` (an input spoiled on purpose).
void poison(const std::filesystem::path& model_file, const std::string& tensor, size_t count, uint16_t bits = 0x7FC0);

// Path of the built CLI (set by CMake) and a runner returning (exit code, stdout+stderr).
struct RunResult {
  int exit_code;
  std::string output;
};
RunResult run_rvec(const std::string& args);
RunResult run_shell(const std::string& command);

// The repository root (for ../shared/data lookups).
std::filesystem::path source_dir();

}  // namespace rvec::test
