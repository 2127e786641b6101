#include "numeric/dtype.hpp"

#include <array>

namespace rvec {
namespace {

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  unsigned bits;            // of one element, or of one block for block types
  unsigned block_elements = 1;
};

constexpr std::array<DTypeInfo, 26> kDTypes = {{
    {DType::kBool, "BOOL", 8},          {DType::kF4, "F4", 4},
    {DType::kF6_E2M3, "F6_E2M3", 6},    {DType::kF6_E3M2, "F6_E3M2", 6},
    {DType::kU8, "U8", 8},              {DType::kI8, "I8", 8},
    {DType::kF8_E5M2, "F8_E5M2", 8},    {DType::kF8_E4M3, "F8_E4M3", 8},
    {DType::kF8_E8M0, "F8_E8M0", 8},    {DType::kF8_E4M3FNUZ, "F8_E4M3FNUZ", 8},
    {DType::kF8_E5M2FNUZ, "F8_E5M2FNUZ", 8},
    {DType::kI16, "I16", 16},           {DType::kU16, "U16", 16},
    {DType::kF16, "F16", 16},           {DType::kBF16, "BF16", 16},
    {DType::kI32, "I32", 32},           {DType::kU32, "U32", 32},
    {DType::kF32, "F32", 32},           {DType::kC64, "C64", 64},
    {DType::kF64, "F64", 64},           {DType::kI64, "I64", 64},
    {DType::kU64, "U64", 64},
    {DType::kQ8_0, "Q8_0", 34 * 8, 32},  {DType::kQ5_0, "Q5_0", 22 * 8, 32},
    {DType::kQ4_K, "Q4_K", 144 * 8, 256}, {DType::kQ6_K, "Q6_K", 210 * 8, 256},
}};

const DTypeInfo& info(DType dtype) { return kDTypes[static_cast<size_t>(dtype)]; }

}  // namespace

std::optional<DType> parse_dtype(std::string_view name) {
  for (const auto& entry : kDTypes) {
    if (entry.name == name && entry.block_elements == 1) return entry.dtype;
  }
  return std::nullopt;
}

std::string_view dtype_name(DType dtype) { return info(dtype).name; }
unsigned dtype_bits(DType dtype) { return info(dtype).bits; }

bool is_block_type(DType dtype) { return info(dtype).block_elements > 1; }
unsigned dtype_block_elements(DType dtype) { return info(dtype).block_elements; }

uint64_t dtype_bytes(DType dtype, uint64_t elements) {
  const DTypeInfo& i = info(dtype);
  return elements / i.block_elements * i.bits / 8;
}

std::string_view torch_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kBF16: return "bfloat16";
    case DType::kF16: return "float16";
    default: return "float32";
  }
}

bool is_arithmetic(DType dtype) {
  return dtype == DType::kBF16 || dtype == DType::kF16 || dtype == DType::kF32;
}

bool is_quantised(DType dtype) {
  switch (dtype) {
    case DType::kF4: case DType::kF6_E2M3: case DType::kF6_E3M2:
    case DType::kF8_E5M2: case DType::kF8_E4M3: case DType::kF8_E8M0:
    case DType::kF8_E4M3FNUZ: case DType::kF8_E5M2FNUZ:
      return true;
    default:
      return false;
  }
}

bool is_floating(DType dtype) {
  return is_arithmetic(dtype) || is_quantised(dtype) || dtype == DType::kF64 ||
         dtype == DType::kC64;
}

}  // namespace rvec
