// ggml's block quantisation: hand-checked cases, round-trip bounds, and bit
// identity with ggml's own reference quantisers (libggml-base.so from the
// pinned node-llama-cpp package) where it is installed.
#include "numeric/quant.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "gguf/llama_cpp.hpp"
#include "numeric/codec.hpp"
#include "numeric/convert.hpp"

namespace rvec {
namespace {

struct QuantType {
  const char* name;
  DType dtype;
  size_t elements, bytes;
  test::GgmlLibrary::Quantize test::GgmlLibrary::*ggml_quantize;
  test::GgmlLibrary::Dequantize test::GgmlLibrary::*ggml_dequantize;
};

const QuantType kTypes[] = {
    {"Q8_0", DType::kQ8_0, quant::kQ8_0Elements, quant::kQ8_0Bytes, &test::GgmlLibrary::quantize_q8_0,
     &test::GgmlLibrary::dequantize_q8_0},
    {"Q5_0", DType::kQ5_0, quant::kQ5_0Elements, quant::kQ5_0Bytes, &test::GgmlLibrary::quantize_q5_0,
     &test::GgmlLibrary::dequantize_q5_0},
    {"Q4_K", DType::kQ4_K, quant::kQ4_KElements, quant::kQ4_KBytes, &test::GgmlLibrary::quantize_q4_k,
     &test::GgmlLibrary::dequantize_q4_k},
    {"Q6_K", DType::kQ6_K, quant::kQ6_KElements, quant::kQ6_KBytes, &test::GgmlLibrary::quantize_q6_k,
     &test::GgmlLibrary::dequantize_q6_k},
};

std::vector<std::byte> quantize(const QuantType& t, const std::vector<float>& x) {
  std::vector<std::byte> out(x.size() / t.elements * t.bytes);
  encode_from_f32(t.dtype, x, out.data());
  return out;
}

std::vector<float> dequantize(const QuantType& t, const std::vector<std::byte>& q, size_t n) {
  std::vector<float> out(n);
  decode_to_f32(t.dtype, q.data(), out);
  return out;
}

// Inputs that reach every branch: normal weights at several scales, zeros, a
// constant, a lone outlier, subnormals, all-positive and all-negative blocks,
// exact ties for the rounding rules.
std::vector<std::vector<float>> inputs(size_t n) {
  std::vector<std::vector<float>> sets;
  std::mt19937 rng(7);
  for (float scale : {1e-3f, 0.02f, 1.0f, 300.0f}) {
    std::normal_distribution<float> normal(0.0f, scale);
    std::vector<float> x(n);
    for (auto& v : x) v = normal(rng);
    sets.push_back(x);
  }
  sets.push_back(std::vector<float>(n, 0.0f));
  sets.push_back(std::vector<float>(n, 0.75f));
  std::vector<float> outlier(n, 0.01f);
  outlier[n / 3] = -40.0f;
  sets.push_back(outlier);
  std::vector<float> tiny(n);
  for (size_t i = 0; i < n; ++i) tiny[i] = static_cast<float>(i % 7) * 1e-39f;
  sets.push_back(tiny);
  std::vector<float> positive(n), negative(n), ties(n);
  for (size_t i = 0; i < n; ++i) {
    positive[i] = 1.0f + static_cast<float>(i % 13) * 0.25f;
    negative[i] = -positive[i];
    // amax 127 in every 32-element block: Q8_0's scale is 1 and the halves are exact ties.
    ties[i] = i % 32 == 0 ? 127.0f : static_cast<float>(static_cast<int>(i % 255) - 127) * 0.5f;
  }
  sets.push_back(positive);
  sets.push_back(negative);
  sets.push_back(ties);
  return sets;
}

TEST(Quant, Q8_0ScaleIsAmaxOver127AndValuesRoundHalfAwayFromZero) {
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;  // d = 1
  x[1] = 2.5f;    // ties away from zero: 3 (not 2)
  x[2] = -2.5f;   // -3
  x[3] = 0.5f;    // 1
  x[4] = -0.49f;  // 0
  const auto q = quantize(kTypes[0], x);
  uint16_t d;
  std::memcpy(&d, q.data(), 2);
  EXPECT_EQ(d, f32_to_f16(1.0f));
  EXPECT_EQ(static_cast<int8_t>(q[2]), 127);
  EXPECT_EQ(static_cast<int8_t>(q[3]), 3);
  EXPECT_EQ(static_cast<int8_t>(q[4]), -3);
  EXPECT_EQ(static_cast<int8_t>(q[5]), 1);
  EXPECT_EQ(static_cast<int8_t>(q[6]), 0);
}

TEST(Quant, RoundTripStaysWithinTheTypesResolution) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(4096);
  for (auto& v : x) v = normal(rng);
  // Root-mean-square error relative to the values' RMS: about 2^-bits.
  const std::pair<const QuantType*, double> bounds[] = {
      {&kTypes[0], 0.01}, {&kTypes[1], 0.06}, {&kTypes[2], 0.12}, {&kTypes[3], 0.03}};
  for (const auto& [type, bound] : bounds) {
    const auto back = dequantize(*type, quantize(*type, x), x.size());
    double err = 0, sum = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      err += (back[i] - x[i]) * (back[i] - x[i]);
      sum += x[i] * x[i];
    }
    EXPECT_LT(std::sqrt(err / sum), bound) << type->name;
  }
}

TEST(Quant, BlocksWithNanOrInfReadBackAsNan) {
  for (const auto& t : kTypes) {
    std::vector<float> x(2 * t.elements, 1.0f);
    x[3] = std::numeric_limits<float>::quiet_NaN();
    x[t.elements + 5] = std::numeric_limits<float>::infinity();
    const auto back = dequantize(t, quantize(t, x), x.size());
    for (size_t i = 0; i < x.size(); ++i) EXPECT_TRUE(std::isnan(back[i])) << t.name << " element " << i;
  }
}

TEST(Quant, BitIdenticalToGgmlsReferenceQuantisers) {
  const test::GgmlLibrary* ggml = test::ggml();
  if (ggml == nullptr) GTEST_SKIP() << "ggml's library is absent: " << test::skip_reason();
  for (const auto& t : kTypes) {
    size_t set = 0;
    for (const auto& x : inputs(8 * 256)) {
      const auto ours = quantize(t, x);
      std::vector<std::byte> theirs(ours.size());
      (ggml->*t.ggml_quantize)(x.data(), theirs.data(), static_cast<int64_t>(x.size()));
      EXPECT_EQ(ours, theirs) << t.name << ", input set " << set;
      std::vector<float> ours_back = dequantize(t, ours, x.size()), theirs_back(x.size());
      (ggml->*t.ggml_dequantize)(ours.data(), theirs_back.data(), static_cast<int64_t>(x.size()));
      EXPECT_EQ(0, std::memcmp(ours_back.data(), theirs_back.data(), x.size() * sizeof(float))) << t.name << ", set " << set;
      ++set;
    }
  }
}

}  // namespace
}  // namespace rvec
