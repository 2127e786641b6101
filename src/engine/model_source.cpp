#include "engine/model_source.hpp"

#include <filesystem>

#include "io/gguf.hpp"

namespace rvec {

std::unique_ptr<ModelSource> ModelSource::open(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const bool gguf = !fs::is_directory(path, ec) && (fs::path(path).extension() == ".gguf" || is_gguf_file(path));
  return gguf ? open_gguf_source(path) : open_hf_source(path);
}

}  // namespace rvec
