// The Hugging Face -> GGUF mapping: names, llama.cpp's type choices (the
// Q4_K_M mix and its fallbacks), the Llama row order, and the tokenizer keys.
#include "hf/gguf_export.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <set>

#include "hf/synthetic.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

namespace fs = std::filesystem;

std::map<std::string, DType> types_by_name(const std::vector<GgufTensorChoice>& tensors) {
  std::map<std::string, DType> out;
  for (const auto& t : tensors) out[t.name] = t.dtype;
  return out;
}

TEST(GgufExport, TensorNamesComeFromTheTable) {
  EXPECT_EQ(gguf_tensor_name("model.embed_tokens.weight"), "token_embd.weight");
  EXPECT_EQ(gguf_tensor_name("lm_head.weight"), "output.weight");
  EXPECT_EQ(gguf_tensor_name("model.norm.weight"), "output_norm.weight");
  EXPECT_EQ(gguf_tensor_name("model.layers.12.self_attn.k_proj.bias"), "blk.12.attn_k.bias");
  EXPECT_EQ(gguf_tensor_name("model.layers.0.self_attn.o_proj.weight"), "blk.0.attn_output.weight");
  EXPECT_EQ(gguf_tensor_name("model.layers.3.post_attention_layernorm.weight"), "blk.3.ffn_norm.weight");
  EXPECT_EQ(gguf_tensor_name("model.layers.3.mlp.down_proj.weight"), "blk.3.ffn_down.weight");
  EXPECT_EQ(gguf_tensor_name("model.layers.3.self_attn.q_norm.weight"), std::nullopt);
}

TEST(GgufExport, LlamaRowsInterleaveTheTwoHalvesOfEachHead) {
  // permute(): reshape(heads, 2, head/2, cols).swapaxes(1, 2)
  const std::vector<uint64_t> expected = {0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15};
  for (uint64_t row = 0; row < 16; ++row) EXPECT_EQ(gguf_source_row(row, 8), expected[row]) << row;
}

class GgufFamily : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    write_family(dir_->path() / "big", {.shape = "1.5b", .sparse = true});  // headers only: shapes of Qwen2.5-1.5B
    write_family(dir_->path() / "tiny", {.shape = "tiny", .dtype = DType::kF32});
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::unique_ptr<ModelFolder> open(const std::string& name) {
    return ModelFolder::open((dir_->path() / name / "target").string());
  }
  static test::TempDir* dir_;
};
test::TempDir* GgufFamily::dir_ = nullptr;

TEST_F(GgufFamily, Q4KMGivesQ6KWhereLlamaQuantizeDoes) {
  const auto model = open("big");  // 28 layers, tied embeddings, rows of 1536 and 8960
  const auto types = types_by_name(gguf_tensors(*model, GgufFileType::kQ4_K_M));
  const std::set<int> more_bits = {0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 24, 25, 26, 27};  // use_more_bits(i, 28)
  for (int layer = 0; layer < 28; ++layer) {
    const DType want = more_bits.count(layer) ? DType::kQ6_K : DType::kQ4_K;
    EXPECT_EQ(types.at(fmt::format("blk.{}.attn_v.weight", layer)), want) << layer;
    EXPECT_EQ(types.at(fmt::format("blk.{}.ffn_down.weight", layer)), want) << layer;
    EXPECT_EQ(types.at(fmt::format("blk.{}.attn_q.weight", layer)), DType::kQ4_K);
    EXPECT_EQ(types.at(fmt::format("blk.{}.ffn_up.weight", layer)), DType::kQ4_K);
    EXPECT_EQ(types.at(fmt::format("blk.{}.attn_q.bias", layer)), DType::kF32);
    EXPECT_EQ(types.at(fmt::format("blk.{}.attn_norm.weight", layer)), DType::kF32);
  }
  EXPECT_EQ(types.at("token_embd.weight"), DType::kQ6_K);  // tied: the embedding is also the head
  EXPECT_FALSE(types.count("output.weight"));
  const auto q8 = types_by_name(gguf_tensors(*model, GgufFileType::kQ8_0));
  EXPECT_EQ(q8.at("blk.7.ffn_down.weight"), DType::kQ8_0);
  EXPECT_EQ(q8.at("output_norm.weight"), DType::kF32);
}

TEST_F(GgufFamily, RowsThatDoNotFillABlockFallBackAsInLlamaQuantize) {
  const auto model = open("tiny");  // rows of 64 and 176 elements, untied
  const auto types = types_by_name(gguf_tensors(*model, GgufFileType::kQ4_K_M));
  EXPECT_EQ(types.at("blk.0.attn_q.weight"), DType::kQ5_0);    // Q4_K -> Q5_0 (64 % 256)
  EXPECT_EQ(types.at("blk.1.attn_v.weight"), DType::kQ8_0);    // Q6_K -> Q8_0
  EXPECT_EQ(types.at("blk.0.ffn_down.weight"), DType::kF16);   // 176 % 32: F16
  EXPECT_EQ(types.at("output.weight"), DType::kQ8_0);          // the head's rows do not fill 256
  EXPECT_EQ(types.at("token_embd.weight"), DType::kQ5_0);      // untied: Q4_K, then its fallback
  EXPECT_EQ(types_by_name(gguf_tensors(*model, GgufFileType::kQ8_0)).at("blk.0.ffn_down.weight"), DType::kF16);
}

TEST_F(GgufFamily, FileOrderIsLlamaQuantizesOrder) {
  const auto tensors = gguf_tensors(*open("big"), GgufFileType::kF16);
  EXPECT_EQ(tensors[0].name, "output_norm.weight");
  EXPECT_EQ(tensors[1].name, "token_embd.weight");
  EXPECT_EQ(tensors[2].name, "blk.0.attn_k.bias");
  std::vector<std::string> layer_starts;
  for (const auto& t : tensors) {
    if (t.name.ends_with(".attn_k.bias")) layer_starts.push_back(t.name);
  }
  EXPECT_EQ(layer_starts[9], "blk.9.attn_k.bias");
  EXPECT_EQ(layer_starts[10], "blk.10.attn_k.bias");  // by number, not as text
}

TEST_F(GgufFamily, TokenizerKeysPadTheVocabularyToTheEmbedding) {
  const auto model = open("tiny");  // 512 embedding rows, a tokenizer of 500 ids
  const GgufMetadata m = gguf_metadata(*model, GgufFileType::kF16, {"tiny", {{"rvec.w", "1"}}});
  const GgufValue* tokens = find_key(m, "tokenizer.ggml.tokens");
  const GgufValue* types = find_key(m, "tokenizer.ggml.token_type");
  ASSERT_TRUE(tokens && types);
  ASSERT_EQ(tokens->items.size(), 512u);
  EXPECT_EQ(std::get<std::string>(tokens->items[511]), "[PAD511]");
  EXPECT_EQ(std::get<int32_t>(types->items[511]), 5);  // UNUSED
  EXPECT_EQ(std::get<int32_t>(types->items[10]), 1);   // NORMAL
  EXPECT_EQ(find_key(m, "general.rvec.w")->describe(), "1");
  EXPECT_EQ(find_key(m, "general.file_type")->describe(), "1");
  EXPECT_EQ(find_key(m, "qwen2.block_count")->describe(), "2");
  EXPECT_EQ(find_key(m, "tokenizer.ggml.model")->describe(), "gpt2");
}

TEST(GgufExportDemo, DemoTokenizerBecomesQwen2Keys) {
  const auto model = ModelFolder::open((test::source_dir() / "demo" / "family" / "target").string());
  const GgufMetadata m = gguf_metadata(*model, GgufFileType::kQ8_0, {"target", {}});
  EXPECT_EQ(find_key(m, "tokenizer.ggml.pre")->describe(), "qwen2");
  EXPECT_EQ(find_key(m, "tokenizer.ggml.bos_token_id")->describe(), "573");
  EXPECT_EQ(find_key(m, "tokenizer.ggml.eos_token_id")->describe(), "575");  // <|im_end|> from tokenizer_config.json
  EXPECT_EQ(find_key(m, "tokenizer.ggml.padding_token_id")->describe(), "573");
  EXPECT_EQ(find_key(m, "tokenizer.ggml.add_bos_token")->describe(), "false");
  EXPECT_EQ(find_key(m, "tokenizer.ggml.merges")->items.size(), 317u);
  EXPECT_EQ(std::get<int32_t>(find_key(m, "tokenizer.ggml.token_type")->items[574]), 3);  // CONTROL: <|im_start|>
  EXPECT_NE(find_key(m, "tokenizer.chat_template"), nullptr);
  EXPECT_EQ(find_key(m, "general.file_type")->describe(), "7");
}

}  // namespace
}  // namespace rvec
