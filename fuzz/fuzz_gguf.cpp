// libFuzzer target: any byte string as a whole GGUF file. The reader must
// either accept it (and then every tensor lies inside the data section,
// aligned, sized for its type and shape) or throw rvec::Error; anything else
// (a crash, a sanitizer report, another exception, a huge allocation) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "base/error.hpp"
#include "io/gguf.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> file(reinterpret_cast<const std::byte*>(data), size);
  try {
    const auto gguf = rvec::parse_gguf_buffer(file, "fuzz");
    for (const auto& t : gguf.tensors) {
      if (t.offset % gguf.alignment != 0 || gguf.data_start + t.offset + t.bytes > size) std::abort();
      if (rvec::find_ggml_type(t.type) == nullptr) std::abort();
    }
  } catch (const rvec::Error&) {
  }
  return 0;
}
