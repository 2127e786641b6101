#include "numeric/dtype.hpp"

#include <array>

namespace rvec {
namespace {

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  unsigned bits;
};

constexpr std::array<DTypeInfo, 22> kDTypes = {{
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
}};

const DTypeInfo& info(DType dtype) { return kDTypes[static_cast<size_t>(dtype)]; }

}  // namespace

std::optional<DType> parse_dtype(std::string_view name) {
  for (const auto& entry : kDTypes) {
    if (entry.name == name) return entry.dtype;
  }
  return std::nullopt;
}

std::string_view dtype_name(DType dtype) { return info(dtype).name; }
unsigned dtype_bits(DType dtype) { return info(dtype).bits; }

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
