// ChoiceOutput on its own: events in, the OpenAI shapes of text and
// log-probabilities out, over the byte model (one token per byte).
#include "serve/choice_output.hpp"

#include <gtest/gtest.h>

#include "serve/byte_model.hpp"

namespace rvec {
namespace {

using nlohmann::json;

PositionLogprobs scored(TokenId token, float logprob, std::vector<TokenLogprob> top) {
  return {{token, logprob}, std::move(top)};
}

ParsedRequest completion(bool echo, bool logprobs) {
  ParsedRequest parsed;
  parsed.echo = echo;
  parsed.logprobs = logprobs;
  GenerationRequest choice;
  choice.prompt = {'a', 'b'};
  parsed.choices.push_back(choice);
  return parsed;
}

TEST(ChoiceOutput, EchoListsThePromptFirstWithNoLogprobForItsFirstToken) {
  const ServedModel model = test::byte_model();
  const ParsedRequest parsed = completion(true, true);
  ChoiceOutput output(parsed, 0, model);
  GenerationEvent first;
  first.token = 'c';
  first.text = "c";
  first.prompt_logprobs = {scored('b', -0.5f, {{'c', -0.25f}, {'b', -0.5f}})};
  first.logprobs = scored('c', -0.75f, {{'d', -0.125f}});
  const ChoicePart part = output.add(first);
  EXPECT_EQ(part.text, "abc");
  const json expected = {{"tokens", {"a", "b", "c"}},
                         {"token_logprobs", {nullptr, -0.5, -0.75}},
                         {"top_logprobs", {nullptr, {{"c", -0.25}, {"b", -0.5}}, {{"d", -0.125}, {"c", -0.75}}}},
                         {"text_offset", {0, 1, 2}}};
  EXPECT_EQ(part.logprobs, expected);
  GenerationEvent next;
  next.token = 'd';
  next.text = "d";
  next.logprobs = scored('d', -1.0f, {});
  EXPECT_EQ(output.add(next).logprobs["text_offset"], json({3}));  // offsets go on across events
}

// Two tokens that show as the same text (pieces of characters are U+FFFD):
// the object keeps the likelier, which comes first.
TEST(ChoiceOutput, TokensShownAsTheSameTextKeepTheLikelier) {
  const ServedModel model = test::byte_model();
  const ParsedRequest parsed = completion(false, true);
  ChoiceOutput output(parsed, 0, model);
  GenerationEvent event;
  event.token = 0x81;
  event.logprobs = scored(0x81, -2.0f, {{0x80, -1.0f}, {'x', -1.5f}});
  const json part = output.add(event).logprobs;
  EXPECT_EQ(part["tokens"], json({"\uFFFD"}));
  EXPECT_EQ(part["top_logprobs"][0], json({{"\uFFFD", -1.0}, {"x", -1.5}}));
}

TEST(ChoiceOutput, ChatEntriesCarryRawBytesAndNothingWhenNotAsked) {
  const ServedModel model = test::byte_model();
  ParsedRequest parsed = completion(false, true);
  parsed.chat = true;
  ChoiceOutput output(parsed, 0, model);
  GenerationEvent event;
  event.token = 0xE3;
  event.logprobs = scored(0xE3, -0.5f, {{0xE3, -0.5f}, {'y', -3.0f}});
  const json expected = {{"content",
                          {{{"token", "\uFFFD"},
                            {"logprob", -0.5},
                            {"bytes", {0xE3}},
                            {"top_logprobs",
                             {{{"token", "\uFFFD"}, {"logprob", -0.5}, {"bytes", {0xE3}}},
                              {{"token", "y"}, {"logprob", -3.0}, {"bytes", {'y'}}}}}}}}};
  EXPECT_EQ(output.add(event).logprobs, expected);
  GenerationEvent stop;  // a stop token: no entry, so nothing to add
  stop.token = 0;
  stop.finish = FinishReason::kStop;
  EXPECT_TRUE(output.add(stop).logprobs.is_null());
  const ParsedRequest plain = completion(true, false);
  ChoiceOutput echo_only(plain, 0, model);
  const ChoicePart part = echo_only.add(GenerationEvent{});
  EXPECT_EQ(part.text, "ab");
  EXPECT_TRUE(part.logprobs.is_null());
}

}  // namespace
}  // namespace rvec
