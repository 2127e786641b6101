// GGUF files: what rvec writes reads back exactly (and ggml's reader accepts
// it), and every malformed header is refused with one line naming the problem.
#include "io/gguf.hpp"

#include <gtest/gtest.h>

#include <cstring>

#include "base/error.hpp"
#include "gguf/llama_cpp.hpp"
#include "io/model_sink.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

namespace fs = std::filesystem;

// Little-endian bytes of a hand-made header.
class Bytes {
 public:
  template <typename T>
  Bytes& put(T v) {
    char raw[sizeof(T)];
    std::memcpy(raw, &v, sizeof(T));
    out_.append(raw, sizeof(T));
    return *this;
  }
  Bytes& str(std::string_view s) {
    put<uint64_t>(s.size());
    out_ += s;
    return *this;
  }
  Bytes& raw(std::string_view s) {
    out_ += s;
    return *this;
  }
  Bytes& pad(size_t alignment = 32) {
    out_.append((alignment - out_.size() % alignment) % alignment, '\0');
    return *this;
  }
  const std::string& text() const { return out_; }

 private:
  std::string out_;
};

// "GGUF", v3, counts.
Bytes header(uint64_t tensors, uint64_t keys) {
  Bytes b;
  b.raw("GGUF").put<uint32_t>(3).put<uint64_t>(tensors).put<uint64_t>(keys);
  return b;
}

// One F32 tensor info: name, dims, type, offset.
Bytes& tensor(Bytes& b, std::string_view name, std::vector<uint64_t> ne, uint32_t type = 0, uint64_t offset = 0) {
  b.str(name).put<uint32_t>(static_cast<uint32_t>(ne.size()));
  for (uint64_t d : ne) b.put<uint64_t>(d);
  return b.put<uint32_t>(type).put<uint64_t>(offset);
}

GgufFile parse(const std::string& bytes) { return parse_gguf_buffer(test::as_bytes(bytes), "m.gguf"); }

std::string error_of(const std::string& bytes) {
  try {
    parse(bytes);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
    return e.what();
  }
  return "accepted";
}

TEST(Gguf, WrittenHeaderReadsBackWithEveryValueType) {
  GgufMetadata metadata = {
      {"general.architecture", GgufValue::string("llama")},
      {"a.u16", GgufValue::u16(7)},
      {"a.u32", GgufValue::u32(4000000000u)},
      {"a.i32", GgufValue::i32(-5)},
      {"a.f32", GgufValue::f32(1e-6f)},
      {"a.bool", GgufValue::boolean(true)},
      {"a.strings", GgufValue::strings({"x", "", "ü"})},
      {"a.i32s", GgufValue::i32s({1, -2, 3})},
  };
  const std::vector<GgufTensorSpec> specs = {{"t.weight", DType::kQ8_0, {3, 64}}, {"norm", DType::kF32, {5}}};
  const auto infos = gguf_tensor_infos(specs, kGgufAlignment);
  std::string file = gguf_header(metadata, infos, kGgufAlignment);
  EXPECT_EQ(file.size() % 32, 0u);
  file.append(204 + 20 + 20, '\0');  // Q8_0 [3, 64]: 204 bytes + 20 padding; F32 [5]: 20 bytes
  const GgufFile read = parse(file);
  ASSERT_EQ(read.metadata.size(), metadata.size());
  for (size_t i = 0; i < metadata.size(); ++i) {
    EXPECT_EQ(read.metadata[i].key, metadata[i].key);
    EXPECT_EQ(read.metadata[i].value.type, metadata[i].value.type);
    EXPECT_EQ(read.metadata[i].value.items, metadata[i].value.items) << metadata[i].key;
  }
  ASSERT_EQ(read.tensors.size(), 2u);
  EXPECT_EQ(read.tensors[0].ne, (std::vector<uint64_t>{64, 3}));  // rows last, as ggml orders them
  EXPECT_EQ(read.tensors[0].type, 8u);
  EXPECT_EQ(read.tensors[0].bytes, 204u);
  EXPECT_EQ(read.tensors[1].offset, 224u);  // 204 padded to 32
  EXPECT_EQ(read.data_start, file.size() - 244);
}

TEST(Gguf, MalformedHeadersAreRefusedNamingTheProblem) {
  const auto with_one_tensor = [](std::vector<uint64_t> ne, uint32_t type, uint64_t offset, size_t data) {
    Bytes b = header(1, 0);
    tensor(b, "w", std::move(ne), type, offset).pad();
    return b.raw(std::string(data, '\0')).text();
  };
  const std::pair<std::string, std::string> cases[] = {
      {"GGUF", "only 4 bytes"},
      {Bytes().raw("GGML").put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(0).text(), "no \"GGUF\" magic"},
      {Bytes().raw("GGUF").put<uint32_t>(1).put<uint64_t>(0).put<uint64_t>(0).text(), "version 1 is not supported"},
      {header(0, 1ull << 60).text(), "more than the limit"},
      {header(1ull << 40, 0).text(), "more than the limit"},
      {header(0, 1).str("k").put<uint32_t>(99).text(), "unknown type 99"},
      {header(0, 1).put<uint64_t>(1ull << 40).text(), "more than the 65535-byte limit"},
      {header(0, 1).str("k").put<uint32_t>(8).put<uint64_t>(1000).raw("abc").text(), "runs past the end of the file"},
      {header(0, 1).str("k").put<uint32_t>(9).put<uint32_t>(9).put<uint64_t>(1).text(), "array of arrays"},
      {header(0, 1).str("k").put<uint32_t>(9).put<uint32_t>(4).put<uint64_t>(1ull << 28).text(), "more than the rest of the file"},
      {header(0, 1).str("k").put<uint32_t>(7).put<uint8_t>(2).text(), "not 0 or 1"},
      {header(0, 2).str("k").put<uint32_t>(4).put<uint32_t>(1).str("k").put<uint32_t>(4).put<uint32_t>(1).text(), "appears twice"},
      {header(0, 1).str("").put<uint32_t>(4).put<uint32_t>(1).text(), "key 0 is empty"},
      {header(0, 1).str("a\nb").put<uint32_t>(4).put<uint32_t>(1).text(), "not printable"},
      {header(0, 1).str("general.alignment").put<uint32_t>(4).put<uint32_t>(24).text(), "not a power of two"},
      {header(0, 1).str("general.alignment").put<uint32_t>(5).put<int32_t>(32).text(), "not u32"},
      {with_one_tensor({4}, 77, 0, 32), "unknown ggml type 77"},
      {with_one_tensor({4}, 4, 0, 32), "unknown ggml type 4"},  // Q4_2: removed from ggml
      {with_one_tensor({40}, 8, 0, 64), "not a multiple of the 32-element Q8_0 block"},
      {with_one_tensor({1ull << 32, 1ull << 32}, 0, 0, 32), "overflows"},
      {with_one_tensor({4}, 0, 8, 64), "not a multiple of the alignment"},
      {with_one_tensor({4}, 0, 0, 8), "runs past the end of the file"},
      {with_one_tensor({4}, 0, 1ull << 62, 32), "runs past the end of the file"},
      {with_one_tensor({}, 0, 0, 32), "0 dimensions"},
      {with_one_tensor({1, 1, 1, 1, 1}, 0, 0, 32), "5 dimensions"},
      {[] {
         Bytes b = header(2, 0);
         tensor(b, "a", {16});
         tensor(b, "b", {16}, 0, 32).pad();
         return b.raw(std::string(96, '\0')).text();
       }(),
       "overlap"},
      {[] {
         Bytes b = header(2, 0);
         tensor(b, "a", {4});
         tensor(b, "a", {4}, 0, 32).pad();
         return b.raw(std::string(64, '\0')).text();
       }(),
       "\"a\" appears twice"},
      {[] {
         Bytes b = header(1, 0);
         tensor(b, std::string(64, 'n'), {4}).pad();
         return b.raw(std::string(32, '\0')).text();
       }(),
       "longer than ggml's 63"},
  };
  for (const auto& [bytes, message] : cases) {
    const std::string error = error_of(bytes);
    EXPECT_NE(error.find(message), std::string::npos) << "expected \"" << message << "\", got: " << error;
    EXPECT_NE(error.find("m.gguf"), std::string::npos) << error;
  }
}

TEST(Gguf, ZeroSizeTensorsAndAnEmptyFileAreAccepted) {
  Bytes b = header(2, 0);
  tensor(b, "empty", {0});
  tensor(b, "w", {8}).pad();
  b.raw(std::string(32, '\0'));
  EXPECT_EQ(parse(b.text()).tensors.size(), 2u);
  EXPECT_EQ(parse(header(0, 0).text()).tensors.size(), 0u);
}

TEST(GgufSink, SplitsLikeGgufSplitAndVerifiesWhatItWrote) {
  test::TempDir dir;
  GgufPlan plan;
  plan.stem = "m";
  plan.metadata = {{"general.architecture", GgufValue::string("llama")}};
  for (int i = 0; i < 3; ++i) plan.tensors.push_back({{"hf." + std::to_string(i), DType::kF32, {10}}, "t" + std::to_string(i)});
  plan.max_file_bytes = 128;  // each tensor is 40 bytes + 24 padding: two per file
  const auto sink = gguf_sink(plan);
  ASSERT_EQ(sink->files().size(), 2u);
  EXPECT_EQ(sink->files()[0].name, "m-00001-of-00002.gguf");
  EXPECT_EQ(sink->files()[1].name, "m-00002-of-00002.gguf");
  EXPECT_FALSE(sink->is_model_folder());
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_FALSE(sink->verify(i, dir.path()));
    const auto writer = sink->open(i, dir.path());
    for (size_t t = 0; t < writer->order().size(); ++t) {
      std::vector<float> values(10, static_cast<float>(i));
      writer->append(std::as_bytes(std::span(values)));
    }
    writer->finish();
    EXPECT_TRUE(sink->verify(i, dir.path()));
    EXPECT_EQ(fs::file_size(dir / sink->files()[i].name), sink->files()[i].bytes);
  }
  const GgufFile first = read_gguf_file((dir / "m-00001-of-00002.gguf").string());
  EXPECT_EQ(find_key(first.metadata, "general.architecture")->describe(), "llama");
  EXPECT_EQ(find_key(first.metadata, "split.count")->describe(), "2");
  const GgufFile second = read_gguf_file((dir / "m-00002-of-00002.gguf").string());
  EXPECT_EQ(find_key(second.metadata, "general.architecture"), nullptr);  // only the first file has the model's keys
  EXPECT_EQ(find_key(second.metadata, "split.no")->describe(), "1");
  EXPECT_EQ(find_key(second.metadata, "split.tensors.count")->describe(), "3");
  EXPECT_EQ(second.tensors.front().name, "t2");
  if (const test::GgmlLibrary* ggml = test::ggml()) {
    EXPECT_TRUE(ggml->accepts_gguf((dir / "m-00001-of-00002.gguf").c_str()));
    EXPECT_TRUE(ggml->accepts_gguf((dir / "m-00002-of-00002.gguf").c_str()));
  }
}

TEST(GgufSink, AWriterRefusesMoreDataThanPlanned) {
  test::TempDir dir;
  const auto sink = gguf_sink({"m", {}, {{{"hf", DType::kF32, {2}}, "t"}}, 0});
  const auto writer = sink->open(0, dir.path());
  const std::vector<float> values(3, 1.0f);
  EXPECT_THROW(writer->append(std::as_bytes(std::span(values))), Error);
}

}  // namespace
}  // namespace rvec
