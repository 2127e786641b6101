#include "hf/model_folder.hpp"

#include <gtest/gtest.h>

#include "base/error.hpp"
#include "hf/synthetic.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

namespace fs = std::filesystem;

void expect_rejected(const fs::path& path, const std::string& needle) {
  try {
    ModelFolder::open(path.string());
    FAIL() << "accepted; expected: " << needle;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kBadInput) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

class ShardedFolder : public ::testing::Test {
 protected:
  void SetUp() override {
    FamilyOptions options;
    options.max_shard_bytes = 100'000;  // the tiny model (~320 kB) in several shards
    write_family(dir_.path(), options);
    model_ = dir_ / "pre";
    index_ = nlohmann::json::parse(test::read_file(model_ / "model.safetensors.index.json"));
  }
  void write_index() { test::write_file(model_ / "model.safetensors.index.json", index_.dump(2)); }

  test::TempDir dir_;
  fs::path model_;
  nlohmann::json index_;
};

TEST_F(ShardedFolder, OpensWithConfigAuxFilesAndAllTensors) {
  const auto model = ModelFolder::open(model_.string());
  EXPECT_TRUE(model->has_index());
  EXPECT_GT(model->shards().size(), 2u);
  EXPECT_EQ(model->tensors().size(), 27u);
  ASSERT_TRUE(model->config());
  EXPECT_EQ(model->config()->architecture(), "Qwen2ForCausalLM");
  EXPECT_EQ(model->config()->hidden_size, 64u);
  EXPECT_EQ(model->config()->head_dim, 16u);
  EXPECT_FALSE(model->tied_embeddings());
  EXPECT_EQ(model->aux_files(), (std::vector<std::string>{"config.json", "generation_config.json", "tokenizer.json",
                                                          "tokenizer_config.json"}));
  EXPECT_EQ(tokenizer_size((model_ / "tokenizer.json").string()), 500u);
  EXPECT_EQ(model->parameter_count(), 158'272u);
}

TEST_F(ShardedFolder, RejectsPathTraversalInShardNames) {
  for (const char* bad : {"../pre/model-00001-of-00004.safetensors", "/etc/passwd", "sub/x.safetensors",
                          "..\\x.safetensors", ".."}) {
    index_["weight_map"]["model.norm.weight"] = bad;
    write_index();
    expect_rejected(model_, "path traversal");
  }
}

TEST_F(ShardedFolder, RejectsMissingShard) {
  fs::remove(model_ / "model-00002-of-00004.safetensors");
  expect_rejected(model_, "lists shard \"model-00002-of-00004.safetensors\", which is missing");
}

TEST_F(ShardedFolder, RejectsTensorListedButAbsent) {
  index_["weight_map"]["model.ghost.weight"] = "model-00001-of-00004.safetensors";
  write_index();
  expect_rejected(model_, "tensor \"model.ghost.weight\" is listed");
}

TEST_F(ShardedFolder, RejectsTensorPresentButUnlisted) {
  index_["weight_map"].erase("model.norm.weight");
  write_index();
  expect_rejected(model_, "tensor \"model.norm.weight\" is in shard");
}

TEST_F(ShardedFolder, RejectsTensorListedInTheWrongShard) {
  const std::string real = index_["weight_map"]["model.norm.weight"];
  index_["weight_map"]["model.norm.weight"] =
      real == "model-00001-of-00004.safetensors" ? "model-00002-of-00004.safetensors" : "model-00001-of-00004.safetensors";
  write_index();
  expect_rejected(model_, "but stored in");
}

TEST_F(ShardedFolder, RejectsOneNameInTwoShards) {
  // Copy shard 1 over shard 2: its tensors are now in two shards.
  fs::copy_file(model_ / "model-00001-of-00004.safetensors", model_ / "model-00002-of-00004.safetensors",
                fs::copy_options::overwrite_existing);
  expect_rejected(model_, "is in two shards");
}

TEST_F(ShardedFolder, RejectsIndexWithDuplicateKeysOrWrongTypes) {
  test::write_file(model_ / "model.safetensors.index.json",
                   R"({"weight_map": {"a": "model-00001-of-00004.safetensors", "a": "x"}})");
  expect_rejected(model_, "appears twice");
  test::write_file(model_ / "model.safetensors.index.json", R"({"weight_map": [1]})");
  expect_rejected(model_, "weight_map");
  test::write_file(model_ / "model.safetensors.index.json", R"({"weight_map": {"a": 5}})");
  expect_rejected(model_, "must be a file name");
}

TEST_F(ShardedFolder, RejectsCorruptShardNamingIt) {
  test::write_file(model_ / "model-00003-of-00004.safetensors", "garbage!");
  expect_rejected(model_, "model-00003-of-00004.safetensors: not a safetensors file");
}

TEST_F(ShardedFolder, RejectsBadConfigField) {
  test::write_file(model_ / "config.json", R"({"hidden_size": "big"})");
  expect_rejected(model_, "config.json: field \"hidden_size\" must be a non-negative integer");
}

TEST(ModelFolder, SingleFileTiedAndPlainFilePaths) {
  test::TempDir dir;
  FamilyOptions options;
  options.tied = true;
  write_family(dir.path(), options);
  const auto model = ModelFolder::open((dir / "target").string());
  EXPECT_FALSE(model->has_index());
  EXPECT_TRUE(model->tied_embeddings());
  EXPECT_EQ(model->find(kLmHeadName), nullptr);
  EXPECT_EQ(model->find_resolving_tied(kLmHeadName), model->find(kEmbedName));
  const auto file = ModelFolder::open((dir / "target" / "model.safetensors").string());
  EXPECT_FALSE(file->is_folder());
  EXPECT_EQ(file->tensors().size(), model->tensors().size());
}

TEST(ModelFolder, RejectsFoldersWithoutWeightsOrWithAmbiguousFiles) {
  test::TempDir dir;
  expect_rejected(dir / "nothing-here", "no such file or folder");
  fs::create_directories(dir / "empty");
  expect_rejected(dir / "empty", "no .safetensors file");
  fs::create_directories(dir / "two");
  test::write_file(dir / "two" / "a.safetensors", test::raw_safetensors("{}", ""));
  test::write_file(dir / "two" / "b.safetensors", test::raw_safetensors("{}", ""));
  expect_rejected(dir / "two", "2 .safetensors files but no model.safetensors.index.json");
}

TEST(ModelFolder, UntiedConfigWithoutLmHeadIsNotTied) {
  test::TempDir dir;
  FamilyOptions options;
  options.tied = true;
  write_family(dir.path(), options);
  auto config = nlohmann::json::parse(test::read_file(dir / "pre" / "config.json"));
  config["tie_word_embeddings"] = false;
  test::write_file(dir / "pre" / "config.json", config.dump());
  EXPECT_FALSE(ModelFolder::open((dir / "pre").string())->tied_embeddings());
}

TEST(SyntheticFamily, IsDeterministicAndDeltasAreSmall) {
  test::TempDir a, b;
  write_family(a.path(), {});
  write_family(b.path(), {});
  for (const char* m : {"pre", "post", "target"}) {
    EXPECT_EQ(test::read_file(a / m / "model.safetensors"), test::read_file(b / m / "model.safetensors")) << m;
  }
  EXPECT_NE(test::read_file(a / "pre" / "model.safetensors"), test::read_file(a / "post" / "model.safetensors"));
}

TEST(SyntheticFamily, SparseFamilyHasRealHeadersAtFullScale) {
  test::TempDir dir;
  FamilyOptions options;
  options.shape = "32b";
  options.sparse = true;
  write_family(dir.path(), options);
  const auto model = ModelFolder::open((dir / "target").string());
  EXPECT_EQ(model->parameter_count(), 32'763'876'352u);
  EXPECT_EQ(model->tensor_bytes(), 65'527'752'704u);
  EXPECT_EQ(model->tensors().size(), 771u);
}

}  // namespace
}  // namespace rvec
