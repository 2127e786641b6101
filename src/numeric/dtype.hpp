// Element types of tensors: every safetensors dtype, plus the block-quantised
// types of ggml (GGUF files), which store a fixed number of elements per block
// (32 or 256) with their scales and are never a safetensors dtype.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace rvec {

enum class DType : uint8_t {
  kBool, kF4, kF6_E2M3, kF6_E3M2, kU8, kI8, kF8_E5M2, kF8_E4M3, kF8_E8M0,
  kF8_E4M3FNUZ, kF8_E5M2FNUZ, kI16, kU16, kF16, kBF16, kI32, kU32, kF32,
  kC64, kF64, kI64, kU64,
  kQ8_0, kQ5_0, kQ4_K, kQ6_K,  // ggml block types (GGUF only)
};

// The exact, case-sensitive safetensors spelling ("BF16"); nullopt if unknown
// or not a safetensors dtype (the block types).
std::optional<DType> parse_dtype(std::string_view name);
std::string_view dtype_name(DType dtype);  // "BF16", "Q8_0"
// Bits of one element; only for element types (not is_block_type()).
unsigned dtype_bits(DType dtype);

// Q8_0, Q5_0 (32 elements a block), Q4_K, Q6_K (256 elements a block).
bool is_block_type(DType dtype);
// Elements a block holds: 1 for element types.
unsigned dtype_block_elements(DType dtype);
// Bytes of `elements` elements; for block types `elements` must be a multiple
// of dtype_block_elements() (callers check shapes first).
uint64_t dtype_bytes(DType dtype, uint64_t elements);

// The torch name config.json uses for an arithmetic dtype ("bfloat16", "float16", "float32").
std::string_view torch_dtype_name(DType dtype);

// BF16, F16 and F32: the types rvec does arithmetic on.
bool is_arithmetic(DType dtype);
// Any floating-point type (including FP8/FP4/FP6 and F64).
bool is_floating(DType dtype);
// FP8/FP6/FP4: quantised floats that carry scales elsewhere; never combined raw.
bool is_quantised(DType dtype);

}  // namespace rvec
