// Log-probabilities: position_logprobs against a log-softmax computed here in
// double, and the Batcher's prompt and answer log-probabilities against the
// f64 reference forward pass (tiny_model.hpp), which shares no code with the engine.
#include "engine/logprobs.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "base/thread_pool.hpp"
#include "engine/batcher.hpp"
#include "engine/sampler.hpp"
#include "engine/tiny_model.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

using test::TempDir;

template <typename Number>
std::vector<double> log_softmax(const std::vector<Number>& logits) {
  const double best = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (const auto logit : logits) sum += std::exp(static_cast<double>(logit) - best);
  std::vector<double> out;
  for (const auto logit : logits) out.push_back(static_cast<double>(logit) - best - std::log(sum));
  return out;
}

// Token ids by descending value, lower id first among equals.
std::vector<TokenId> ranking(const std::vector<double>& values) {
  std::vector<TokenId> ids(values.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(), [&](TokenId a, TokenId b) { return values[a] > values[b]; });
  return ids;
}

TEST(Logprobs, PositionLogprobsIsALogSoftmax) {
  std::mt19937_64 rng(3);
  std::normal_distribution<float> normal(0.0f, 8.0f);
  std::vector<float> logits(5000);
  for (auto& logit : logits) logit = normal(rng);
  logits[17] = logits[4000] = 60.0f;  // a tie at the top: the lower id comes first
  const auto expected = log_softmax(logits);
  const auto order = ranking(expected);
  const PositionLogprobs p = position_logprobs(logits, 123, 20);
  EXPECT_EQ(p.chosen.token, 123);
  EXPECT_NEAR(p.chosen.logprob, expected[123], 1e-5);
  ASSERT_EQ(p.top.size(), 20u);
  EXPECT_EQ(p.top[0].token, 17);
  EXPECT_EQ(p.top[1].token, 4000);
  for (size_t i = 0; i < p.top.size(); ++i) {
    EXPECT_EQ(p.top[i].token, order[i]) << i;
    EXPECT_NEAR(p.top[i].logprob, expected[static_cast<size_t>(order[i])], 1e-5) << i;
  }
  EXPECT_TRUE(position_logprobs(logits, 0, 0).top.empty());
  EXPECT_EQ(position_logprobs(std::vector<float>{1, 2, 3}, 0, 20).top.size(), 3u);  // no more than the vocabulary
  std::vector<float> broken = logits;
  broken[9] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(position_logprobs(broken, 0, 1), NonFiniteLogits);
}

// Runs `request` alone to the end; its events in order.
std::vector<GenerationEvent> run_alone(Transformer& engine, const GenerationRequest& request) {
  Batcher batcher(engine, nullptr, 1, 256);
  batcher.add(request);
  std::vector<GenerationEvent> events;
  while (!batcher.idle()) {
    for (auto& event : batcher.step()) events.push_back(std::move(event));
  }
  return events;
}

// Issue 16: every prompt and answer token's log-probability, and the top
// alternatives, agree with a log-softmax of the f64 reference logits to 1e-4.
// The prompt is longer than the engine's block of earlier rows (64).
TEST(Logprobs, PromptAndAnswerMatchTheF64Reference) {
  TempDir dir;
  const auto model = test::write_tiny_model(dir.path(), {});
  ThreadPool pool(2);
  auto engine = Transformer::load(dir.path().string(), pool);
  GenerationRequest request;
  for (int i = 0; i < 150; ++i) request.prompt.push_back((i * 37 + 5) % 96);
  request.max_tokens = 4;
  request.logprobs = request.prompt_logprobs = true;
  request.top_logprobs = 5;
  const auto events = run_alone(*engine, request);
  ASSERT_EQ(events.size(), 4u);
  ASSERT_EQ(events[0].prompt_logprobs.size(), request.prompt.size() - 1);
  std::vector<int> tokens(request.prompt.begin(), request.prompt.end());
  for (const auto& event : events) tokens.push_back(event.token);
  const auto reference = test::reference_logits(model, tokens);
  // Position i's logits score tokens[i + 1]; the answer's come after the prompt's.
  std::vector<PositionLogprobs> scored = events[0].prompt_logprobs;
  for (const auto& event : events) {
    ASSERT_TRUE(event.logprobs.has_value());
    scored.push_back(*event.logprobs);
  }
  ASSERT_EQ(scored.size(), tokens.size() - 1);
  double sum = 0, expected_sum = 0;
  for (size_t i = 0; i + 1 < tokens.size(); ++i) {
    const auto expected = log_softmax(reference[i]);
    const auto order = ranking(expected);
    EXPECT_EQ(scored[i].chosen.token, tokens[i + 1]) << "position " << i;
    EXPECT_NEAR(scored[i].chosen.logprob, expected[static_cast<size_t>(tokens[i + 1])], 1e-4) << "position " << i;
    ASSERT_EQ(scored[i].top.size(), 5u);
    for (size_t k = 0; k < 5; ++k) {
      EXPECT_EQ(scored[i].top[k].token, order[k]) << "position " << i << ", rank " << k;
      EXPECT_NEAR(scored[i].top[k].logprob, expected[static_cast<size_t>(order[k])], 1e-4);
    }
    sum += scored[i].chosen.logprob;
    expected_sum += expected[static_cast<size_t>(tokens[i + 1])];
  }
  EXPECT_NEAR(sum, expected_sum, 1e-3);
  // The answer is greedy (temperature 0): its tokens are the most likely ones.
  for (const auto& event : events) EXPECT_EQ(event.logprobs->top[0].token, event.token);
}

// max_tokens 0 scores the prompt and generates nothing; without
// prompt_logprobs there would be nothing to do, and the Batcher refuses it.
TEST(Logprobs, MaxTokensZeroOnlyScoresThePrompt) {
  TempDir dir;
  test::write_tiny_model(dir.path(), {});
  ThreadPool pool(2);
  auto engine = Transformer::load(dir.path().string(), pool);
  GenerationRequest request;
  request.prompt = {3, 1, 4, 1, 5};
  request.max_tokens = 0;
  request.prompt_logprobs = true;
  const auto events = run_alone(*engine, request);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].token, -1);
  EXPECT_EQ(events[0].finish, FinishReason::kLength);
  EXPECT_EQ(events[0].prompt_logprobs.size(), 4u);
  EXPECT_FALSE(events[0].logprobs.has_value());
  request.prompt_logprobs = false;
  Batcher batcher(*engine, nullptr, 1, 256);
  EXPECT_THROW(batcher.add(request), Error);
}

// A sequence that scores its prompt changes nothing for the others in its
// batch, and its own tokens are those it gets without scoring.
TEST(Logprobs, ScoringAPromptLeavesTheTokensAlone) {
  TempDir dir;
  test::write_tiny_model(dir.path(), {});
  ThreadPool pool(2);
  auto engine = Transformer::load(dir.path().string(), pool);
  GenerationRequest plain, scoring;
  plain.prompt = {9, 8, 7, 6};
  scoring.prompt = {1, 2, 3, 4, 5, 6, 7};
  plain.max_tokens = scoring.max_tokens = 6;
  plain.sampling.temperature = scoring.sampling.temperature = 0.9f;
  plain.sampling.seed = 4;
  scoring.sampling.seed = 5;
  GenerationRequest scored = scoring;
  scored.prompt_logprobs = scored.logprobs = true;
  const auto tokens_of = [](const std::vector<GenerationEvent>& events, uint64_t id) {
    std::vector<TokenId> out;
    for (const auto& event : events) {
      if (event.id == id) out.push_back(event.token);
    }
    return out;
  };
  Batcher batcher(*engine, nullptr, 2, 256);
  const uint64_t plain_id = batcher.add(plain), scored_id = batcher.add(scored);
  std::vector<GenerationEvent> events;
  while (!batcher.idle()) {
    for (auto& event : batcher.step()) events.push_back(std::move(event));
  }
  EXPECT_EQ(tokens_of(events, plain_id), tokens_of(run_alone(*engine, plain), 1));
  EXPECT_EQ(tokens_of(events, scored_id), tokens_of(run_alone(*engine, scoring), 1));
}

// A stop token is not part of the answer: its event carries no log-probability.
TEST(Logprobs, AStopTokenHasNone) {
  TempDir dir;
  test::write_tiny_model(dir.path(), {});
  ThreadPool pool(2);
  auto engine = Transformer::load(dir.path().string(), pool);
  GenerationRequest request;
  request.prompt = {10, 20, 30};
  request.max_tokens = 3;
  request.logprobs = true;
  const TokenId first = run_alone(*engine, request)[0].token;
  request.stop_tokens = {first};
  const auto events = run_alone(*engine, request);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].finish, FinishReason::kStop);
  EXPECT_FALSE(events[0].logprobs.has_value());
}

// A prompt whose logits are non-finite ends its sequence with an error that
// names the position, as sampling does.
TEST(Logprobs, NonFiniteLogitsInThePromptEndTheSequence) {
  TempDir dir;
  test::write_tiny_model(dir.path(), {});
  test::poison_embedding_row(dir.path(), 7);
  ThreadPool pool(2);
  auto engine = Transformer::load(dir.path().string(), pool);
  GenerationRequest request;
  request.prompt = {1, 2, 7, 3};
  request.max_tokens = 0;
  request.prompt_logprobs = true;
  const auto events = run_alone(*engine, request);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].finish, FinishReason::kError);
  EXPECT_NE(events[0].error.find("non-finite logits"), std::string::npos) << events[0].error;
  EXPECT_NE(events[0].error.find("at position 3"), std::string::npos) << events[0].error;
}

}  // namespace
}  // namespace rvec
