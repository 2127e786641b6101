// GGUF v3 files, llama.cpp's model format: strict reading and exact writing.
//
// Layout (little-endian):
//   "GGUF", u32 version (3; 2 is read too), u64 tensor count, u64 key count
//   keys:    string key, u32 value type, value        (string = u64 length + bytes)
//   tensors: string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset
//   zero padding to general.alignment (32 unless the file says otherwise), then
//   the data section; each tensor's offset (relative to the data section) is a
//   multiple of the alignment and every tensor is padded with zeros after it.
//
// ne[0] is the row length: ne is a Hugging Face shape reversed. Nothing in a
// file is trusted: parse_gguf() checks every count, length and type before it
// allocates or reads further, with overflow-safe arithmetic (the rules are
// listed in docs/gguf.md). Thread-safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "numeric/dtype.hpp"

namespace rvec {

inline constexpr uint64_t kGgufAlignment = 32;

enum class GgufValueType : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};
std::string_view gguf_value_type_name(GgufValueType type);

using GgufScalar = std::variant<uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, float, bool, std::string,
                                uint64_t, int64_t, double>;

// A scalar, or an array of scalars of one type (arrays of arrays are refused, as by ggml).
struct GgufValue {
  GgufValueType type = GgufValueType::kU32;  // kArray for arrays
  GgufValueType element_type = GgufValueType::kU32;  // arrays only
  std::vector<GgufScalar> items;                     // one item for a scalar

  static GgufValue u16(uint16_t v);
  static GgufValue u32(uint32_t v);
  static GgufValue i32(int32_t v);
  static GgufValue f32(float v);
  static GgufValue boolean(bool v);
  static GgufValue string(std::string v);
  static GgufValue strings(std::vector<std::string> v);
  static GgufValue i32s(const std::vector<int32_t>& v);

  bool is_array() const { return type == GgufValueType::kArray; }
  // The scalar as text ("32", "true", "qwen2"); an array as "[N items]".
  std::string describe() const;
};

struct GgufKv {
  std::string key;
  GgufValue value;
};
using GgufMetadata = std::vector<GgufKv>;

const GgufValue* find_key(const GgufMetadata& metadata, std::string_view key);

// A ggml tensor type: its id in the file, block elements and block bytes.
struct GgmlType {
  uint32_t id;
  std::string_view name;
  uint32_t block_elements;
  uint32_t block_bytes;
};
// Every type ggml defines (removed ids are absent); null if unknown.
const GgmlType* find_ggml_type(uint32_t id);
// The ggml type of an rvec dtype; fails (kUsage) for dtypes GGUF cannot hold.
const GgmlType& ggml_type_of(DType dtype);

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> ne;  // ggml order: ne[0] is the row length
  uint32_t type = 0;
  uint64_t offset = 0;  // relative to the data section
  uint64_t bytes = 0;   // exact data size (without padding)
};

struct GgufFile {
  uint32_t version = 3;
  GgufMetadata metadata;
  std::vector<GgufTensorInfo> tensors;  // in the file's order
  uint64_t alignment = kGgufAlignment;
  uint64_t data_start = 0;  // absolute offset of the data section
};

// Reads `out.size()` bytes at `offset` of the source; the caller has checked
// that they lie inside the file.
using ByteSource = std::function<void(uint64_t offset, std::span<std::byte> out)>;

// Validates the header of a GGUF file of `file_size` bytes read through
// `read`; `origin` names it in errors (kBadInput, one line).
GgufFile parse_gguf(const ByteSource& read, uint64_t file_size, std::string_view origin);
GgufFile parse_gguf_buffer(std::span<const std::byte> file, std::string_view origin);
GgufFile read_gguf_file(const std::string& path);

// True if the first bytes of a file are the GGUF magic.
bool is_gguf_file(const std::string& path);

// ---------------------------------------------------------------- writing --

// One tensor to write: its GGUF name, type and Hugging Face shape.
struct GgufTensorSpec {
  std::string name;
  DType dtype;
  std::vector<uint64_t> shape;  // Hugging Face order (rows first)
};

// Tensor infos with offsets for tensors laid out in the given order.
std::vector<GgufTensorInfo> gguf_tensor_infos(const std::vector<GgufTensorSpec>& tensors, uint64_t alignment);

// Header bytes (magic through tensor infos) padded to the alignment: the
// data section starts right after them.
std::string gguf_header(const GgufMetadata& metadata, const std::vector<GgufTensorInfo>& tensors, uint64_t alignment);

// Bytes of zero padding after `bytes` bytes of data.
uint64_t gguf_padding(uint64_t bytes, uint64_t alignment);

}  // namespace rvec
