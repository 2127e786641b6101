#include "numeric/codec.hpp"

#include <cstring>

#include "base/error.hpp"
#include "numeric/convert.hpp"
#include "numeric/kernels.hpp"
#include "numeric/quant.hpp"

namespace rvec {

void decode_to_f32(DType dtype, const std::byte* in, std::span<float> out) {
  if (out.empty()) return;
  switch (dtype) {
    case DType::kF32:
      std::memcpy(out.data(), in, out.size() * 4);
      return;
    case DType::kBF16:
      if (reinterpret_cast<uintptr_t>(in) % alignof(uint16_t) == 0) {
        kernels::bf16_to_f32(reinterpret_cast<const uint16_t*>(in), out.data(), out.size());
        return;
      }
      [[fallthrough]];
    case DType::kF16:
      for (size_t i = 0; i < out.size(); ++i) {
        uint16_t bits;
        std::memcpy(&bits, in + 2 * i, 2);
        out[i] = dtype == DType::kBF16 ? bf16_to_f32(bits) : f16_to_f32(bits);
      }
      return;
    case DType::kQ8_0: return quant::dequantize_q8_0(in, out);
    case DType::kQ5_0: return quant::dequantize_q5_0(in, out);
    case DType::kQ4_K: return quant::dequantize_q4_k(in, out);
    case DType::kQ6_K: return quant::dequantize_q6_k(in, out);
    default:
      fail(ErrorKind::kBadInput, "{} tensors are not supported for arithmetic", dtype_name(dtype));
  }
}

void encode_from_f32(DType dtype, std::span<const float> in, std::byte* out) {
  if (in.empty()) return;
  switch (dtype) {
    case DType::kF32:
      std::memcpy(out, in.data(), in.size() * 4);
      return;
    case DType::kBF16:
      if (reinterpret_cast<uintptr_t>(out) % alignof(uint16_t) == 0) {
        kernels::f32_to_bf16(in.data(), reinterpret_cast<uint16_t*>(out), in.size());
        return;
      }
      [[fallthrough]];
    case DType::kF16:
      for (size_t i = 0; i < in.size(); ++i) {
        const uint16_t bits = dtype == DType::kBF16 ? f32_to_bf16(in[i]) : f32_to_f16(in[i]);
        std::memcpy(out + 2 * i, &bits, 2);
      }
      return;
    case DType::kQ8_0: return quant::quantize_q8_0(in, out);
    case DType::kQ5_0: return quant::quantize_q5_0(in, out);
    case DType::kQ4_K: return quant::quantize_q4_k(in, out);
    case DType::kQ6_K: return quant::quantize_q6_k(in, out);
    default:
      fail(ErrorKind::kBadInput, "{} tensors are not supported for arithmetic", dtype_name(dtype));
  }
}

}  // namespace rvec
