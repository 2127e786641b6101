#include "io/safetensors.hpp"

#include <gtest/gtest.h>

#include "base/error.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

using test::as_bytes;
using test::raw_safetensors;

SafetensorsHeader parse(const std::string& file) { return parse_safetensors_buffer(as_bytes(file), "t.safetensors"); }

// Expects the file to be rejected as bad input with a message containing `needle`.
void expect_rejected(const std::string& file, const std::string& needle) {
  try {
    parse(file);
    FAIL() << "accepted; expected an error containing: " << needle;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
    const std::string message = e.what();
    EXPECT_NE(message.find(needle), std::string::npos) << "message: " << message;
    EXPECT_EQ(message.rfind("t.safetensors: ", 0), 0u) << "message must name the file: " << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << "message must be one line: " << message;
  }
}

std::string one_tensor(const std::string& entry, size_t data_bytes) {
  return raw_safetensors("{\"w\":" + entry + "}", std::string(data_bytes, '\x01'));
}

const std::string kGoodEntry = R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

TEST(SafetensorsHeader, AcceptsAMinimalFile) {
  const auto h = parse(one_tensor(kGoodEntry, 8));
  ASSERT_EQ(h.tensors.size(), 1u);
  EXPECT_EQ(h.tensors[0].name, "w");
  EXPECT_EQ(h.tensors[0].dtype, DType::kF32);
  EXPECT_EQ(h.tensors[0].shape, (std::vector<uint64_t>{2}));
  EXPECT_EQ(h.data_start(), 8 + h.header_bytes);
}

// --- the reference's checks, in its order ---------------------------------

TEST(SafetensorsHeader, RejectsFileShorterThanLengthPrefix) { expect_rejected("abc", "shorter than the 8-byte"); }

TEST(SafetensorsHeader, RejectsHeaderOverTheSizeLimit) {
  std::string file(16, '\0');
  const uint64_t n = kMaxHeaderBytes + 1;
  for (int i = 0; i < 8; ++i) file[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  expect_rejected(file, "exceeds the 100000000-byte limit");
}

TEST(SafetensorsHeader, RejectsHeaderLengthPastEndOfFile) {
  expect_rejected(raw_safetensors("{}", "").substr(0, 9), "runs past the end");
  std::string huge(8, '\xFF');  // 2^64-1: would overflow 8 + N
  expect_rejected(huge + "{}", "exceeds");
}

TEST(SafetensorsHeader, RejectsInvalidUtf8) {
  expect_rejected(raw_safetensors("{\"w\xFF\":{}}", ""), "not valid UTF-8 at byte 3");
}

TEST(SafetensorsHeader, RejectsNonObjectHeaders) {
  expect_rejected(raw_safetensors("[]", ""), "must be one JSON object");
  expect_rejected(raw_safetensors("42", ""), "must be one JSON object");
  expect_rejected(raw_safetensors("{\"w\":[1]}", ""), "tensor \"w\" must be an object");
  expect_rejected(raw_safetensors("{", ""), "not valid JSON");
  expect_rejected(raw_safetensors("{} {}", ""), "not valid JSON");
}

TEST(SafetensorsHeader, RejectsWrongFieldTypes) {
  expect_rejected(one_tensor(R"({"dtype":7,"shape":[2],"data_offsets":[0,8]})", 8), "field \"dtype\" has the wrong type");
  expect_rejected(one_tensor(R"({"dtype":"F32","shape":"2","data_offsets":[0,8]})", 8),
                  "field \"shape\" has the wrong type");
  expect_rejected(one_tensor(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8,9]})", 8), "more than 2 entries");
  expect_rejected(one_tensor(R"({"dtype":"F32","shape":[2],"data_offsets":[0]})", 8), "has 1 entries, not 2");
  expect_rejected(one_tensor(R"({"dtype":"F32","shape":[[2]],"data_offsets":[0,8]})", 8), "must hold integers");
}

TEST(SafetensorsHeader, RejectsUnknownOrMiscasedDtype) {
  expect_rejected(one_tensor(R"({"dtype":"f32","shape":[2],"data_offsets":[0,8]})", 8), "not a safetensors dtype");
  expect_rejected(one_tensor(R"({"dtype":"F128","shape":[2],"data_offsets":[0,8]})", 8), "not a safetensors dtype");
}

TEST(SafetensorsHeader, RejectsMissingAndDuplicateFields) {
  expect_rejected(one_tensor(R"({"dtype":"F32","shape":[2]})", 8), "field \"data_offsets\" is missing");
  expect_rejected(one_tensor(R"({"shape":[2],"data_offsets":[0,8]})", 8), "field \"dtype\" is missing");
  expect_rejected(one_tensor(R"({"dtype":"F32","data_offsets":[0,8]})", 8), "field \"shape\" is missing");
  expect_rejected(one_tensor(R"({"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]})", 8),
                  "field \"dtype\" appears twice");
}

TEST(SafetensorsHeader, RejectsNegativeFractionalAndHugeNumbers) {
  expect_rejected(one_tensor(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})", 8), "a negative number");
  expect_rejected(one_tensor(R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})", 8), "the number 2.0");
  expect_rejected(one_tensor(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8e0]})", 8), "the number 8e0");
  expect_rejected(one_tensor(R"({"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,8]})", 8),
                  "the number 18446744073709551616");
}

TEST(SafetensorsHeader, RejectsGapsOverlapsAndSharedRanges) {
  const std::string gap = R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                          R"("b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]}})";
  expect_rejected(raw_safetensors(gap, "12345"), "a gap");
  const std::string overlap = R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                              R"("b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}})";
  expect_rejected(raw_safetensors(overlap, "123"), "overlapping data");
  const std::string shared = R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                             R"("b":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})";
  expect_rejected(raw_safetensors(shared, "12"), "overlapping data");
  const std::string late_start = R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})";
  expect_rejected(raw_safetensors(late_start, "1234"), "a gap");
  expect_rejected(one_tensor(R"({"dtype":"U8","shape":[0],"data_offsets":[8,0]})", 8), "end before they begin");
}

TEST(SafetensorsHeader, RejectsShapeOverflow) {
  expect_rejected(one_tensor(R"({"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,8]})", 8),
                  "overflows 64 bits");
  expect_rejected(one_tensor(R"({"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]})", 8),
                  "byte size overflows");
}

TEST(SafetensorsHeader, RejectsSubByteTensorsEndingMidByte) {
  expect_rejected(one_tensor(R"({"dtype":"F4","shape":[3],"data_offsets":[0,2]})", 2), "byte boundary");
  expect_rejected(one_tensor(R"({"dtype":"F6_E2M3","shape":[2],"data_offsets":[0,2]})", 2), "byte boundary");
  EXPECT_NO_THROW(parse(one_tensor(R"({"dtype":"F4","shape":[4],"data_offsets":[0,2]})", 2)));
  EXPECT_NO_THROW(parse(one_tensor(R"({"dtype":"F6_E3M2","shape":[4],"data_offsets":[0,3]})", 3)));
}

TEST(SafetensorsHeader, RejectsSizeNotMatchingShape) {
  expect_rejected(one_tensor(R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})", 8), "needs 12");
}

TEST(SafetensorsHeader, RejectsTrailingBytesAndTruncation) {
  expect_rejected(one_tensor(kGoodEntry, 9), "trailing bytes");
  expect_rejected(one_tensor(kGoodEntry, 7), "truncated file");
}

// --- rvec's stricter rules ----------------------------------------------------

TEST(SafetensorsHeader, RejectsDuplicateTensorNames) {
  const std::string dup = R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                          R"("w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})";
  expect_rejected(raw_safetensors(dup, "12"), "duplicate tensor name \"w\"");
}

TEST(SafetensorsHeader, RejectsEmptyAndControlCharacterNames) {
  expect_rejected(raw_safetensors(R"({"":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "1"), "empty name");
  expect_rejected(raw_safetensors(R"({"a\u0000b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "1"),
                  "control character");
  expect_rejected(raw_safetensors(R"({"a\nb":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "1"),
                  "control character");
  expect_rejected(raw_safetensors("{\"a\xC2\x85\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", "1"),
                  "control character");
}

TEST(SafetensorsHeader, RejectsTensorNamedMetadata) {
  expect_rejected(raw_safetensors(R"({"__metadata__":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "1"),
                  "may not be named \"__metadata__\"");
}

TEST(SafetensorsHeader, RejectsUnknownFields) {
  expect_rejected(one_tensor(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8],"quant":"x"})", 8),
                  "unknown field \"quant\"");
}

TEST(SafetensorsHeader, RejectsNulPadding) {
  expect_rejected(raw_safetensors(std::string("{}") + std::string(6, '\0'), ""), "padded with NUL bytes");
}

TEST(SafetensorsHeader, RejectsBadMetadata) {
  expect_rejected(raw_safetensors(R"({"__metadata__":{"a":1}})", ""), "__metadata__ must map strings to strings");
  expect_rejected(raw_safetensors(R"({"__metadata__":{"a":"x","a":"y"}})", ""), "appears twice");
  expect_rejected(raw_safetensors(R"({"__metadata__":"x"})", ""), "found a string");
  expect_rejected(raw_safetensors(R"({"__metadata__":null,"__metadata__":null})", ""), "appears twice");
}

// --- what the reference accepts and so do we -----------------------------------

TEST(SafetensorsHeader, AcceptsWhitespaceAndUnpaddedLengths) {
  const auto h = parse(raw_safetensors(std::string(" \n{\"w\":") + kGoodEntry + "}\t ", std::string(8, 'x')));
  EXPECT_EQ(h.tensors.size(), 1u);
  EXPECT_NE(h.header_bytes % 8, 0u);
}

TEST(SafetensorsHeader, AcceptsNullOrEmptyMetadata) {
  EXPECT_TRUE(parse(raw_safetensors(R"({"__metadata__":null})", "")).metadata.empty());
  EXPECT_TRUE(parse(raw_safetensors(R"({"__metadata__":{}})", "")).metadata.empty());
  const auto h = parse(raw_safetensors(R"({"__metadata__":{"format":"pt"}})", ""));
  EXPECT_EQ(h.metadata.at("format"), "pt");
}

TEST(SafetensorsHeader, AcceptsScalarsZeroSizeTensorsAndAnyKeyOrder) {
  const std::string header = R"({"z":{"shape":[0,4],"data_offsets":[2,2],"dtype":"BF16"},)"
                             R"("s":{"data_offsets":[0,2],"dtype":"F16","shape":[]},)"
                             R"("y":{"dtype":"I64","shape":[0],"data_offsets":[2,2]}})";
  const auto h = parse(raw_safetensors(header, "ab"));
  ASSERT_EQ(h.tensors.size(), 3u);
  EXPECT_EQ(h.tensors[0].name, "s");
  EXPECT_EQ(h.tensors[0].element_count(), 1u);
  EXPECT_NE(h.find("z"), nullptr);
  EXPECT_EQ(h.find("z")->byte_size(), 0u);
}

TEST(SafetensorsHeader, RecognisesEveryDtypeOfTheFormat) {
  for (const char* name : {"BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
                           "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "C64",
                           "F64", "I64", "U64"}) {
    const auto dtype = parse_dtype(name);
    ASSERT_TRUE(dtype) << name;
    EXPECT_EQ(dtype_name(*dtype), name);
    const uint64_t bytes = 8 * dtype_bits(*dtype) / 8;
    const std::string entry =
        fmt::format(R"({{"dtype":"{}","shape":[8],"data_offsets":[0,{}]}})", name, bytes);
    EXPECT_NO_THROW(parse(one_tensor(entry, bytes))) << name;
  }
  EXPECT_TRUE(is_quantised(DType::kF8_E4M3));
  EXPECT_FALSE(is_arithmetic(DType::kF8_E4M3));
  EXPECT_TRUE(is_arithmetic(DType::kBF16));
}

TEST(SafetensorsFile, ReadsThroughPreadAndMapAndNoticesShrinking) {
  test::TempDir dir;
  const auto path = dir / "a.safetensors";
  test::write_file(path, one_tensor(kGoodEntry, 8));
  const auto file = SafetensorsFile::open(path.string());
  const TensorInfo& t = file->header().tensors[0];
  std::vector<std::byte> buffer(3);
  file->read(t, 5, buffer);
  EXPECT_EQ(buffer[0], std::byte{1});
  EXPECT_EQ(file->map(t).size(), 8u);
  EXPECT_THROW(file->read(t, 6, buffer), Error);  // past the tensor's end
  std::filesystem::resize_file(path, 20);
  EXPECT_THROW(file->check_unchanged(), Error);
  try {
    file->read(t, 0, buffer);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("shrank"), std::string::npos) << e.what();
  }
}

TEST(SafetensorsFile, OpenNamesMissingFile) {
  try {
    SafetensorsFile::open("/nonexistent/x.safetensors");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kIo);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/x.safetensors: cannot open"), std::string::npos);
  }
}

}  // namespace
}  // namespace rvec
