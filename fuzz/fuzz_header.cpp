// libFuzzer target: any byte string as a whole safetensors file. The parser
// must either accept it (and then every tensor lies inside the file) or throw
// rvec::Error; anything else (a crash, a sanitizer report, another exception)
// is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "base/error.hpp"
#include "io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> file(reinterpret_cast<const std::byte*>(data), size);
  try {
    const auto header = rvec::parse_safetensors_buffer(file, "fuzz");
    for (const auto& t : header.tensors) {
      if (t.end < t.begin || header.data_start() + t.end > size) std::abort();
    }
  } catch (const rvec::Error&) {
  }
  return 0;
}
