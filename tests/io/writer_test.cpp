#include "io/writer.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <numeric>

#include "base/error.hpp"
#include "base/text.hpp"
#include "io/model_sink.hpp"
#include "io/safetensors.hpp"
#include "hf/model_folder.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

// Arbitrary valid tensor names: printable ASCII and a few non-ASCII scripts.
rc::Gen<std::string> gen_name() {
  const std::vector<std::string> pieces = {"model", ".", "layers", "0", "7", "_", "q_proj", "weight", "bias",
                                           "日本", "ü", "😀", "-", " ", "Ω", "x"};
  return rc::gen::map(rc::gen::nonEmpty(rc::gen::container<std::vector<size_t>>(
                          rc::gen::inRange<size_t>(0, pieces.size()))),
                      [pieces](const std::vector<size_t>& idx) {
                        std::string s;
                        for (size_t i : idx) s += pieces[i];
                        return s;
                      });
}

rc::Gen<DType> gen_dtype() {
  return rc::gen::element(DType::kBF16, DType::kF16, DType::kF32, DType::kU8, DType::kI64, DType::kBool,
                          DType::kF8_E4M3, DType::kF64, DType::kI32);
}

std::vector<uint64_t> any_shape() {
  const auto rank = *rc::gen::inRange<size_t>(0, 4);
  return *rc::gen::container<std::vector<uint64_t>>(rank, rc::gen::inRange<uint64_t>(0, 6));
}

std::vector<std::byte> pattern(uint64_t size, uint64_t salt) {
  std::vector<std::byte> out(size);
  for (uint64_t i = 0; i < size; ++i) out[i] = static_cast<std::byte>((i * 131 + salt * 7) & 0xFF);
  return out;
}

RC_GTEST_PROP(SafetensorsWriter, WriteThenReadRoundTrips, ()) {
  const auto names = *rc::gen::unique<std::vector<std::string>>(gen_name());
  std::vector<TensorSpec> tensors;
  for (const auto& name : names) tensors.push_back({name, *gen_dtype(), any_shape()});
  Metadata metadata;
  const auto metadata_count = *rc::gen::inRange<size_t>(0, 3);
  for (size_t i = 0; i < metadata_count; ++i) metadata[*gen_name()] = *gen_name();
  metadata.erase("format");

  test::TempDir dir;
  const auto path = (dir / "x.safetensors").string();
  {
    SafetensorsWriter writer(path, tensors, metadata);
    for (size_t i = 0; i < writer.order().size(); ++i) {
      const auto bytes = pattern(writer.order()[i].byte_size(), i);
      const size_t half = bytes.size() / 2;  // append in two pieces
      writer.append(std::span(bytes).first(half));
      writer.append(std::span(bytes).subspan(half));
    }
    writer.finish();
  }
  const auto file = SafetensorsFile::open(path);
  const auto& h = file->header();
  RC_ASSERT(h.header_bytes % 8 == 0);
  RC_ASSERT(h.metadata.at("format") == "pt");
  for (const auto& [k, v] : metadata) RC_ASSERT(h.metadata.at(k) == v);
  RC_ASSERT(h.tensors.size() == tensors.size());
  const auto order = safetensors_order(tensors);
  for (size_t i = 0; i < order.size(); ++i) {
    const TensorInfo* t = h.find(order[i].name);
    RC_ASSERT(t != nullptr);
    RC_ASSERT(t->dtype == order[i].dtype);
    RC_ASSERT(t->shape == order[i].shape);
    const auto bytes = file->map(*t);
    const auto expected = pattern(order[i].byte_size(), i);
    RC_ASSERT(std::equal(bytes.begin(), bytes.end(), expected.begin(), expected.end()));
  }
}

TEST(SafetensorsWriter, OrdersLikeSafetensorsSerialize) {
  const auto order = safetensors_order({{"b", DType::kBF16, {1}}, {"a", DType::kU8, {1}}, {"c", DType::kF32, {1}},
                                        {"a16", DType::kF16, {1}}, {"d", DType::kI64, {1}}});
  std::vector<std::string> names;
  for (const auto& t : order) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"d", "c", "a16", "b", "a"}));
}

TEST(SafetensorsWriter, HeaderIsCompactMetadataFirstAndSpacePadded) {
  const std::string h = build_header({{"w", DType::kF32, {2}}}, {{"k", "v"}});
  EXPECT_EQ(h.rfind(R"({"__metadata__":{"format":"pt","k":"v"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 0), 0u);
  EXPECT_EQ(h.size() % 8, 0u);
  EXPECT_EQ(h.find_first_not_of(' ', h.find_last_of('}') + 1), std::string::npos);
}

TEST(SafetensorsWriter, RefusesTooMuchOrTooLittleData) {
  test::TempDir dir;
  SafetensorsWriter w((dir / "a.safetensors").string(), {{"w", DType::kF32, {1}}}, {});
  const std::vector<std::byte> five(5);
  EXPECT_THROW(w.append(five), Error);
  SafetensorsWriter short_writer((dir / "b.safetensors").string(), {{"w", DType::kF32, {1}}}, {});
  EXPECT_THROW(short_writer.finish(), Error);
}

TEST(ShardPlan, GreedyInStateDictOrderLikeSavePretrained) {
  const std::vector<TensorSpec> tensors = {{"a", DType::kU8, {40}}, {"b", DType::kU8, {50}}, {"c", DType::kU8, {20}},
                                           {"big", DType::kU8, {300}}, {"d", DType::kU8, {10}}};
  const auto shards = plan_shards(tensors, 100);
  ASSERT_EQ(shards.size(), 4u);
  EXPECT_EQ(shards[0].tensors.size(), 2u);  // a + b = 90; + c would be 110
  EXPECT_EQ(shards[1].tensors[0].name, "c");
  EXPECT_EQ(shards[2].tensors[0].name, "big");  // larger than the limit: alone
  EXPECT_EQ(shards[3].tensors[0].name, "d");
  EXPECT_EQ(shards[0].file_name, "model-00001-of-00004.safetensors");
  EXPECT_EQ(shards[3].file_name, "model-00004-of-00004.safetensors");
  EXPECT_EQ(plan_shards(tensors, 1000).front().file_name, "model.safetensors");
}

TEST(ShardPlan, IndexHasTotalSizeAndSortedWeightMap) {
  const auto shards = plan_shards({{"z", DType::kU8, {60}}, {"a", DType::kU8, {60}}}, 100);
  const auto index = nlohmann::json::parse(index_json(shards));
  EXPECT_EQ(index["metadata"]["total_size"], 120);
  EXPECT_EQ(index["weight_map"]["z"], "model-00001-of-00002.safetensors");
  EXPECT_EQ(index["weight_map"]["a"], "model-00002-of-00002.safetensors");
  EXPECT_LT(index_json(shards).find("\"a\""), index_json(shards).find("\"z\""));
}

RC_GTEST_PROP(SafetensorsSink, ShardedFolderRoundTripsThroughModelFolder, ()) {
  const auto sizes = *rc::gen::nonEmpty(rc::gen::container<std::vector<uint64_t>>(rc::gen::inRange<uint64_t>(1, 50)));
  const uint64_t max_shard = *rc::gen::inRange<uint64_t>(1, 120);
  std::vector<TensorSpec> tensors;
  for (size_t i = 0; i < sizes.size(); ++i) tensors.push_back({fmt::format("t.{}", i), DType::kU8, {sizes[i]}});
  test::TempDir dir;
  const auto sink = safetensors_sink(tensors, {}, max_shard);
  StagingDir staging(dir / "model", false);
  for (size_t i = 0; i < sink->files().size(); ++i) {
    RC_ASSERT(!sink->verify(i, staging.path()));
    auto file = sink->open(i, staging.path());
    for (const auto& t : file->order()) file->append(pattern(t.byte_size(), t.shape[0]));
    file->finish();
    RC_ASSERT(file->total_size() == sink->files()[i].bytes);
    RC_ASSERT(sink->verify(i, staging.path()));
  }
  sink->finish(staging);
  RC_ASSERT(!std::filesystem::exists(dir / "model"));
  staging.commit();
  RC_ASSERT(!std::filesystem::exists(staging_path_for(dir / "model")));
  const auto model = ModelFolder::open((dir / "model").string());
  RC_ASSERT(model->has_index() == (sink->files().size() > 1));
  RC_ASSERT(model->tensors().size() == tensors.size());
  for (const auto& spec : tensors) {
    const ModelTensor* t = model->find(spec.name);
    RC_ASSERT(t != nullptr);
    const auto bytes = t->file->map(*t->info);
    const auto expected = pattern(spec.byte_size(), spec.shape[0]);
    RC_ASSERT(std::equal(bytes.begin(), bytes.end(), expected.begin(), expected.end()));
  }
}

}  // namespace
}  // namespace rvec
