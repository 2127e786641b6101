#include "gguf/llama_cpp.hpp"

#include <dlfcn.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/text.hpp"
#include "test_util.hpp"

namespace rvec::test {
namespace {

namespace fs = std::filesystem;

fs::path npm_dir() { return source_dir() / "tests" / "gguf" / "npm"; }
fs::path library_path() {
  return npm_dir() / "node_modules" / "@node-llama-cpp" / "linux-x64" / "bins" / "linux-x64" / "libggml-base.so";
}

struct GgufInitParams {  // struct gguf_init_params
  bool no_alloc;
  void** ctx;
};
using GgufInit = void* (*)(const char*, GgufInitParams);
using GgufFree = void (*)(void*);
GgufInit g_gguf_init = nullptr;
GgufFree g_gguf_free = nullptr;

bool accepts(const char* path) {
  void* ctx = g_gguf_init(path, {true, nullptr});
  if (ctx == nullptr) return false;
  g_gguf_free(ctx);
  return true;
}

template <typename F>
F symbol(void* handle, const char* name) {
  return reinterpret_cast<F>(::dlsym(handle, name));
}

std::optional<GgmlLibrary> load() {
  void* handle = ::dlopen(library_path().c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) return std::nullopt;
  GgmlLibrary lib{};
  lib.quantize_q8_0 = symbol<GgmlLibrary::Quantize>(handle, "quantize_row_q8_0_ref");
  lib.quantize_q5_0 = symbol<GgmlLibrary::Quantize>(handle, "quantize_row_q5_0_ref");
  lib.quantize_q4_k = symbol<GgmlLibrary::Quantize>(handle, "quantize_row_q4_K_ref");
  lib.quantize_q6_k = symbol<GgmlLibrary::Quantize>(handle, "quantize_row_q6_K_ref");
  lib.dequantize_q8_0 = symbol<GgmlLibrary::Dequantize>(handle, "dequantize_row_q8_0");
  lib.dequantize_q5_0 = symbol<GgmlLibrary::Dequantize>(handle, "dequantize_row_q5_0");
  lib.dequantize_q4_k = symbol<GgmlLibrary::Dequantize>(handle, "dequantize_row_q4_K");
  lib.dequantize_q6_k = symbol<GgmlLibrary::Dequantize>(handle, "dequantize_row_q6_K");
  g_gguf_init = symbol<GgufInit>(handle, "gguf_init_from_file");
  g_gguf_free = symbol<GgufFree>(handle, "gguf_free");
  lib.accepts_gguf = accepts;
  if (!lib.quantize_q8_0 || !lib.quantize_q5_0 || !lib.quantize_q4_k || !lib.quantize_q6_k || !lib.dequantize_q8_0 ||
      !lib.dequantize_q5_0 || !lib.dequantize_q4_k || !lib.dequantize_q6_k || !g_gguf_init || !g_gguf_free) {
    return std::nullopt;
  }
  return lib;
}

std::string join(const std::vector<int32_t>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) out += (i ? "," : "") + std::to_string(ids[i]);
  return out;
}

}  // namespace

const GgmlLibrary* ggml() {
  static const std::optional<GgmlLibrary> lib = load();
  return lib ? &*lib : nullptr;
}

std::string skip_reason() {
  if (run_shell("command -v node").exit_code != 0) return "node is not installed (scripts/setup.sh installs it)";
  std::error_code ec;
  if (!fs::exists(npm_dir() / "node_modules" / "node-llama-cpp", ec) || !fs::exists(library_path(), ec)) {
    return "node-llama-cpp is absent: run scripts/setup.sh (npm ci in tests/gguf/npm)";
  }
  return "";
}

std::optional<std::vector<int32_t>> llama_generate(const std::string& gguf, const std::vector<int32_t>& prompt,
                                                   size_t count, std::string* error) {
  // One thread, named explicitly (ggml's threads spin while they wait: two of
  // them on this loaded 2-core machine took 100x longer), and a bounded run:
  // a hang fails the test instead of stalling the suite.
  const auto run = run_shell("ulimit -u 2000; timeout 120 node " + (npm_dir() / "generate.mjs").string() + " " +
                             shell_quote(gguf) + " " + join(prompt) + " " + std::to_string(count) + " 1");
  const auto line = run.output.rfind("{\"ids\"");
  if (run.exit_code != 0 || line == std::string::npos) {
    *error = "exit " + std::to_string(run.exit_code) + ": " + run.output;
    return std::nullopt;
  }
  return nlohmann::json::parse(run.output.substr(line)).at("ids").get<std::vector<int32_t>>();
}

}  // namespace rvec::test
