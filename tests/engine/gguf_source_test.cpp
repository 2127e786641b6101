// The GGUF model source's pieces on their own: Llama's q/k rows back in
// Hugging Face order, and the tokenizer rebuilt from tokenizer.ggml.* keys.
#include "engine/gguf_source.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "base/json.hpp"
#include "hf/gguf_export.hpp"
#include "hf/model_folder.hpp"
#include "text/gguf_tokenizer.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

namespace fs = std::filesystem;

fs::path family_target() { return test::source_dir() / "demo" / "family" / "target"; }

// Export's rule (row r of the file is HF row gguf_source_row(r)) then the
// engine's inverse give the HF rows back, for every head size and row width.
TEST(GgufSource, RowsInHfOrderInvertTheExportPermutation) {
  for (const size_t head_rows : {2u, 4u, 8u, 64u}) {
    for (const size_t heads : {1u, 3u}) {
      for (const size_t row_bytes : {1u, 4u, 34u}) {
        const size_t rows = heads * head_rows;
        std::vector<std::byte> hf(rows * row_bytes);
        for (size_t i = 0; i < hf.size(); ++i) hf[i] = static_cast<std::byte>((i * 7 + i / row_bytes) % 251);
        std::vector<std::byte> gguf(hf.size());
        for (size_t r = 0; r < rows; ++r) {
          std::copy_n(hf.begin() + gguf_source_row(r, head_rows) * row_bytes, row_bytes, gguf.begin() + r * row_bytes);
        }
        if (head_rows > 2) {
          EXPECT_NE(gguf, hf) << "the permutation moves rows";
        }
        EXPECT_EQ(rows_in_hf_order(gguf, row_bytes, head_rows), hf) << head_rows << " " << heads << " " << row_bytes;
      }
    }
  }
}

GgufMetadata metadata_of(const fs::path& folder) {
  const auto model = ModelFolder::open(folder.string());
  return gguf_metadata(*model, GgufFileType::kF32, GgufOrigin{"test", {}});
}

// The tokenizer written into a GGUF file encodes (and decodes) as the
// tokenizer.json it came from: vocabulary, merges, added tokens, NFC.
TEST(GgufTokenizer, EncodesAsTheTokenizerJsonItWasWrittenFrom) {
  const auto original = Tokenizer::load(family_target().string());
  std::string absence;
  const auto rebuilt = tokenizer_from_gguf(metadata_of(family_target()), "x.gguf", absence);
  ASSERT_NE(rebuilt, nullptr) << absence;
  auto lines = read_json_file((test::source_dir() / "tests" / "text" / "tokenizer_corpus.json").string())
                   .get<std::vector<std::string>>();
  lines.push_back("<|im_start|>user\n2+3は?<|im_end|>\n<|im_start|>assistant\n");
  lines.push_back("e\xCC\x81 (a decomposed é, which NFC composes)");
  for (const auto& text : lines) {
    const auto ids = original->encode(text);
    EXPECT_EQ(rebuilt->encode(text), ids) << text;
    EXPECT_EQ(rebuilt->decode(ids), original->decode(ids)) << text;
  }
  EXPECT_EQ(rebuilt->size(), original->size());
  EXPECT_EQ(rebuilt->find("<|im_end|>"), original->find("<|im_end|>"));
  EXPECT_TRUE(rebuilt->is_special(*rebuilt->find("<|im_end|>")));
  EXPECT_EQ(rebuilt->path(), "x.gguf");
}

TEST(GgufTokenizer, FilesWithoutARunnableTokenizerSayWhy) {
  auto metadata = metadata_of(family_target());
  std::string absence;
  for (auto& kv : metadata) {
    if (kv.key == "tokenizer.ggml.pre") kv.value = GgufValue::string("deepseek-llm");
  }
  EXPECT_EQ(tokenizer_from_gguf(metadata, "x.gguf", absence), nullptr);
  EXPECT_NE(absence.find("tokenizer.ggml.pre \"deepseek-llm\" is not a pre-tokenizer rvec knows"), std::string::npos)
      << absence;
  for (auto& kv : metadata) {
    if (kv.key == "tokenizer.ggml.model") kv.value = GgufValue::string("llama");
  }
  EXPECT_EQ(tokenizer_from_gguf(metadata, "x.gguf", absence), nullptr);
  EXPECT_NE(absence.find("tokenizer.ggml.model is \"llama\""), std::string::npos) << absence;
  for (auto& kv : metadata) {
    if (kv.key == "tokenizer.ggml.token_type") kv.value = GgufValue::string("1");
    if (kv.key == "tokenizer.ggml.model") kv.value = GgufValue::string("gpt2");
    if (kv.key == "tokenizer.ggml.pre") kv.value = GgufValue::string("qwen2");
  }
  try {
    tokenizer_from_gguf(metadata, "x.gguf", absence);
    ADD_FAILURE() << "a token_type that is not an array was accepted";
  } catch (const std::exception& e) {
    EXPECT_STREQ(e.what(), "x.gguf: key tokenizer.ggml.token_type must be an array of i32");
  }
}

}  // namespace
}  // namespace rvec
