#include "engine/transformer.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/error.hpp"
#include "base/json.hpp"
#include "base/thread_pool.hpp"
#include "engine/batcher.hpp"
#include "engine/sampler.hpp"
#include "engine/tiny_model.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

using test::TempDir;

std::filesystem::path stories_dir() { return test::source_dir() / ".." / "shared" / "data" / "stories260K"; }

// Max |engine - reference| over all logits of `tokens`, run as a prompt of
// `prompt` tokens followed by single-token decode steps.
double max_logit_error(const test::TinyModelSpec& spec, const std::vector<int>& tokens, size_t prompt) {
  TempDir dir;
  const auto model = test::write_tiny_model(dir.path(), spec);
  const auto reference = test::reference_logits(model, tokens);
  ThreadPool pool(2);
  auto engine = Transformer::load(dir.path().string(), pool);
  KvCache cache = engine->new_cache();
  std::vector<float> logits;
  double worst = 0;
  size_t at = 0;
  while (at < tokens.size()) {
    const size_t count = at == 0 ? prompt : 1;
    std::vector<TokenId> ids(tokens.begin() + at, tokens.begin() + at + count);
    const ForwardItem item{&cache, ids};
    engine->forward(std::span(&item, 1), logits);
    at += count;
    for (size_t v = 0; v < spec.vocab; ++v) worst = std::max(worst, std::abs(logits[v] - reference[at - 1][v]));
  }
  return worst;
}

TEST(Transformer, MatchesF64ReferenceQwen2WithBiasGqaUntied) {
  test::TinyModelSpec spec;
  EXPECT_LT(max_logit_error(spec, {5, 17, 3, 88, 42, 9, 1, 60, 33, 7}, 6), 1e-4);
}

TEST(Transformer, MatchesF64ReferenceTiedHeadNoBias) {
  test::TinyModelSpec spec;
  spec.tied = true;
  spec.qkv_bias = false;
  spec.kv_heads = 4;
  spec.seed = 2;
  EXPECT_LT(max_logit_error(spec, {1, 2, 3, 4, 5, 6, 7, 8}, 3), 1e-4);
}

TEST(Transformer, MatchesF64ReferenceBf16WeightsAndOneKvHead) {
  test::TinyModelSpec spec;
  spec.bf16 = true;
  spec.kv_heads = 1;
  spec.rope_theta = 1e6;
  spec.seed = 3;
  EXPECT_LT(max_logit_error(spec, {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 11, 12}, 12), 1e-4);
}

TEST(Transformer, PromptOf80TokensUsesGemmTilesAndStillMatches) {
  test::TinyModelSpec spec;
  spec.seed = 4;
  std::vector<int> tokens;
  for (int i = 0; i < 80; ++i) tokens.push_back((i * 37) % 96);
  EXPECT_LT(max_logit_error(spec, tokens, 70), 1e-4);
}

TEST(Transformer, MissingTensorIsNamed) {
  TempDir dir;
  test::TinyModelSpec spec;
  spec.tied = true;  // no lm_head.weight, but the config will say the head is not tied
  test::write_tiny_model(dir.path(), spec);
  auto config = read_json_file((dir / "config.json").string());
  config["tie_word_embeddings"] = false;
  test::write_file(dir / "config.json", config.dump());
  ThreadPool pool(1);
  try {
    Transformer::load(dir.path().string(), pool);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), dir.path().string() + ": tensor lm_head.weight is missing");
  }
}

TEST(Transformer, UnsupportedArchitectureIsRefused) {
  TempDir dir;
  test::write_tiny_model(dir.path(), {});
  auto config = read_json_file((dir / "config.json").string());
  config["architectures"] = {"GemmaForCausalLM"};
  config["model_type"] = "gemma";
  test::write_file(dir / "config.json", config.dump());
  ThreadPool pool(1);
  EXPECT_THROW(Transformer::load(dir.path().string(), pool), Error);
}

std::vector<TokenId> expected_stories_ids() {
  const auto expected = read_json_file((stories_dir() / "expected.json").string());
  return expected.at("greedy_ids").get<std::vector<TokenId>>();
}

TEST(Transformer, Stories260KGreedyMatchesGolden) {
  if (!std::filesystem::exists(stories_dir())) GTEST_SKIP() << "../shared/data/stories260K is absent";
  const auto expected = expected_stories_ids();
  ThreadPool pool(2);
  auto engine = Transformer::load(stories_dir().string(), pool);
  KvCache cache = engine->new_cache();
  std::vector<TokenId> ids{expected.front()};
  std::vector<float> logits;
  while (ids.size() < expected.size()) {
    const TokenId last = ids.back();
    const ForwardItem item{&cache, std::span(&last, 1)};
    engine->forward(std::span(&item, 1), logits);
    ids.push_back(argmax(logits));
  }
  EXPECT_EQ(ids, expected);
}

// Twelve sequences at once and one at a time produce the same tokens, greedy
// or sampled, whatever their prompts' lengths (the first step mixes prompts
// of up to 20 tokens with decoding; groups of four sum in another order).
TEST(Batcher, BatchedAndUnbatchedDecodingAgree) {
  if (!std::filesystem::exists(stories_dir())) GTEST_SKIP() << "../shared/data/stories260K is absent";
  const auto golden = expected_stories_ids();
  ThreadPool pool(2);
  auto engine = Transformer::load(stories_dir().string(), pool);
  const auto request_for = [&](size_t i) {
    GenerationRequest r;
    r.prompt.assign(golden.begin(), golden.begin() + 1 + (i * 7) % 20);
    r.max_tokens = 40;
    r.sampling.temperature = i % 3 == 0 ? 0.0f : 0.8f;
    r.sampling.top_p = 0.9f;
    r.sampling.seed = 100 + i;
    return r;
  };
  const auto run = [&](const std::vector<size_t>& which, size_t max_batch) {
    Batcher batcher(*engine, nullptr, max_batch, 512);
    std::map<uint64_t, size_t> index;
    for (size_t i : which) index[batcher.add(request_for(i))] = i;
    std::map<size_t, std::vector<TokenId>> out;
    while (!batcher.idle()) {
      for (const auto& event : batcher.step()) out[index[event.id]].push_back(event.token);
    }
    return out;
  };
  std::vector<size_t> all(12);
  std::iota(all.begin(), all.end(), 0);
  const auto batched = run(all, 12);
  for (size_t i : all) {
    EXPECT_EQ(batched.at(i), run({i}, 1).at(i)) << "sequence " << i;
    EXPECT_EQ(batched.at(i).size(), 40u);
  }
}

TEST(Sampler, NonFiniteLogitsAreAnErrorAtAnyTemperature) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (const float temperature : {0.0f, 1.0f}) {
    for (const std::vector<float>& logits : {std::vector<float>(8, nan), std::vector<float>{1, 2, inf, 0}}) {
      Sampler sampler({temperature, 0.9f, 0, 1});
      EXPECT_THROW(sampler.sample(logits), NonFiniteLogits) << "temperature " << temperature;
    }
  }
  try {
    Sampler({1.0f, 1.0f, 0, 1}).sample(std::vector<float>{1, 2, -inf, 0});
    FAIL() << "no error";
  } catch (const NonFiniteLogits& e) {
    EXPECT_EQ(e.token(), 2);
    EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
    EXPECT_STREQ(e.what(), "the model produced non-finite logits (-inf for token 2)");
  }
}

// A sequence whose logits are NaN ends with an error event; the others in the
// same batch finish normally.
TEST(Batcher, NonFiniteLogitsEndOnlyTheirSequence) {
  TempDir dir;
  test::write_tiny_model(dir.path(), {});
  test::poison_embedding_row(dir.path(), 7);
  ThreadPool pool(2);
  auto engine = Transformer::load(dir.path().string(), pool);
  Batcher batcher(*engine, nullptr, 4, 64);
  GenerationRequest healthy, broken;
  healthy.prompt = {1, 2};
  broken.prompt = {1, 7};
  healthy.max_tokens = broken.max_tokens = 5;
  healthy.sampling.temperature = broken.sampling.temperature = 1.0f;
  const uint64_t healthy_id = batcher.add(healthy), broken_id = batcher.add(broken);
  size_t healthy_tokens = 0;
  std::vector<GenerationEvent> broken_events;
  while (!batcher.idle()) {
    for (const auto& event : batcher.step()) {
      if (event.id == healthy_id) healthy_tokens += event.finish != FinishReason::kError;
      if (event.id == broken_id) broken_events.push_back(event);
    }
  }
  EXPECT_EQ(healthy_tokens, 5u);
  ASSERT_EQ(broken_events.size(), 1u);
  EXPECT_EQ(broken_events[0].finish, FinishReason::kError);
  EXPECT_EQ(broken_events[0].error, dir.path().string() +
                                        ": the model produced non-finite logits (nan for token 0) at position 2; its "
                                        "weights hold NaN or Inf values, or its arithmetic overflows");
}

}  // namespace
}  // namespace rvec
