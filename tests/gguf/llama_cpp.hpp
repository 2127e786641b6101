// llama.cpp as the reference for rvec's GGUF files, from the pinned npm
// package in tests/gguf/npm (node-llama-cpp 3.21.1 and its prebuilt linux-x64
// CPU binaries; scripts/setup.sh runs `npm ci` there):
//
//   ggml()            ggml's own quantisers and GGUF reader, loaded from
//                     libggml-base.so with dlopen (null when absent)
//   llama_generate()  greedy ids from llama.cpp for a GGUF file, through
//                     generate.mjs under a timeout (so a hang fails the test)
//
// Tests skip with skip_reason() where node or the package is missing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace rvec::test {

struct GgmlLibrary {
  using Quantize = void (*)(const float* x, void* y, int64_t k);
  using Dequantize = void (*)(const void* x, float* y, int64_t k);
  Quantize quantize_q8_0, quantize_q5_0, quantize_q4_k, quantize_q6_k;
  Dequantize dequantize_q8_0, dequantize_q5_0, dequantize_q4_k, dequantize_q6_k;
  // gguf_init_from_file() with no_alloc, then gguf_free(): does ggml accept the file?
  bool (*accepts_gguf)(const char* path);
};

// The library, or null (and skip_reason() says why).
const GgmlLibrary* ggml();

// Why llama.cpp tests skip here, or empty when node and the package are installed.
std::string skip_reason();

// llama.cpp's greedy continuation of `prompt` (up to `count` ids, stopping
// after an end-of-generation id); nullopt and `error` filled when it fails.
std::optional<std::vector<int32_t>> llama_generate(const std::string& gguf, const std::vector<int32_t>& prompt,
                                                   size_t count, std::string* error);

}  // namespace rvec::test
