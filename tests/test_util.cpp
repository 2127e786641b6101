#include "test_util.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

#include "io/safetensors.hpp"

namespace rvec::test {

TempDir::TempDir() {
  std::random_device rd;
  path_ = std::filesystem::temp_directory_path() /
          ("rvec-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void write_file(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

std::set<std::string> file_names(const std::filesystem::path& dir) {
  std::set<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string raw_safetensors(std::string_view header, std::string_view data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  out += header;
  out += data;
  return out;
}

std::vector<std::byte> as_bytes(std::string_view text) {
  const auto* p = reinterpret_cast<const std::byte*>(text.data());
  return {p, p + text.size()};
}

void poison(const std::filesystem::path& model_file, const std::string& tensor, size_t count, uint16_t bits) {
  uint64_t offset = 0;
  {
    const auto file = SafetensorsFile::open(model_file.string());
    const TensorInfo* info = file->header().find(tensor);
    if (info == nullptr) throw std::runtime_error("poison: no tensor " + tensor + " in " + model_file.string());
    offset = file->header().data_start() + info->begin;
  }
  const char value[2] = {static_cast<char>(bits & 0xFF), static_cast<char>(bits >> 8)};
  std::fstream f(model_file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(offset));
  for (size_t i = 0; i < count; ++i) f.write(value, 2);
}

RunResult run_rvec(const std::string& args) { return run_shell(std::string(RVEC_CLI_PATH) + " " + args); }

RunResult run_shell(const std::string& command_line) {
  const std::string command = "(" + command_line + ") 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("popen failed");
  std::string output;
  std::array<char, 4096> buffer;
  size_t got;
  while ((got = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) output.append(buffer.data(), got);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

std::filesystem::path source_dir() { return RVEC_SOURCE_DIR; }

}  // namespace rvec::test
