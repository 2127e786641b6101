// parse_request on its own: every field checked and named, without a model.
#include "serve/request.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <nlohmann/json.hpp>

#include "serve/byte_model.hpp"
#include "serve/http_error.hpp"
#include "text/unicode.hpp"

namespace rvec {
namespace {

using nlohmann::json;

const ServedModel& model() {
  static const ServedModel instance = test::byte_model(64);
  return instance;
}

json chat(const json& fields = json::object()) {
  json body = {{"messages", {{{"role", "user"}, {"content", "hi"}}}}};
  body.update(fields);
  return body;
}

// The HttpError parse_request throws for `body` (status 0 if it throws none).
HttpError refusal(const std::string& body, Endpoint endpoint = Endpoint::kChat) {
  try {
    parse_request(body, endpoint, model());
  } catch (const HttpError& error) {
    return error;
  }
  return {0, "", ""};
}

TEST(ParseRequest, ReadsEveryField) {
  const auto parsed = parse_request(chat({{"n", 3},
                                          {"seed", 7},
                                          {"temperature", 0.5},
                                          {"top_p", 0.9},
                                          {"top_k", 5},
                                          {"max_completion_tokens", 10},
                                          {"stop", {"a", ""}},
                                          {"stream", true},
                                          {"stream_options", {{"include_usage", true}}},
                                          {"model", "tiny"},
                                          {"user", "someone"},
                                          {"presence_penalty", 0}})
                                        .dump(),
                                    Endpoint::kChat, model());
  EXPECT_TRUE(parsed.chat);
  EXPECT_TRUE(parsed.stream);
  EXPECT_TRUE(parsed.include_usage);
  EXPECT_EQ(parsed.prompt_tokens, std::string("user: hi\n").size());
  ASSERT_EQ(parsed.choices.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(parsed.choices[i].sampling.seed, 7 + i);
  EXPECT_EQ(parsed.choices[0].max_tokens, 10u);
  EXPECT_EQ(parsed.choices[0].stop_strings, std::vector<std::string>{"a"});  // "" can never match
  EXPECT_FLOAT_EQ(parsed.choices[0].sampling.temperature, 0.5f);
  EXPECT_EQ(parsed.choices[0].sampling.top_k, 5u);
}

TEST(ParseRequest, NullMeansNotGiven) {
  json body = chat();
  for (const char* field : {"n", "seed", "temperature", "top_p", "top_k", "max_tokens", "stop", "stream",
                            "stream_options", "model", "logprobs"}) {
    body[field] = nullptr;
  }
  const auto parsed = parse_request(body.dump(), Endpoint::kChat, model());
  EXPECT_FALSE(parsed.stream);
  EXPECT_EQ(parsed.choices.size(), 1u);
  EXPECT_EQ(parsed.choices[0].max_tokens, 64 - parsed.prompt_tokens);  // chat: the rest of the context
  const auto completion = parse_request(R"({"prompt": [1, 2, 3]})", Endpoint::kCompletion, model());
  EXPECT_EQ(completion.choices[0].max_tokens, 16u);
}

TEST(ParseRequest, WrongTypesAndRangesNameTheField) {
  const std::vector<std::pair<json, std::string>> cases = {
      {{{"stream", "yes"}}, "stream"},
      {{{"stream", 1}}, "stream"},
      {{{"stream_options", "x"}}, "stream_options"},
      {{{"stream_options", {{"include_usage", 1}}}}, "stream_options.include_usage"},
      {{{"stream_options", {{"chunk_size", 1}}}}, "stream_options.chunk_size"},
      {{{"n", 0}}, "n"},
      {{{"n", 65}}, "n"},
      {{{"n", 2.5}}, "n"},
      {{{"n", 18446744073709551615ull}}, "n"},
      {{{"seed", 1.5}}, "seed"},
      {{{"temperature", -1}}, "temperature"},
      {{{"temperature", "0"}}, "temperature"},
      {{{"top_p", 0}}, "top_p"},
      {{{"top_k", "5"}}, "top_k"},
      {{{"max_tokens", 0}}, "max_tokens"},
      {{{"max_tokens", 100}}, "max_tokens"},  // more than the context has room for
      {{{"max_tokens", 5}, {"max_completion_tokens", 6}}, "max_completion_tokens"},
      {{{"stop", 5}}, "stop"},
      {{{"stop", json::array({"a", 5})}}, "stop"},
      {{{"stop", std::vector<std::string>(17, "x")}}, "stop"},
      {{{"stop", std::string(257, 'x')}}, "stop"},
      {{{"model", 5}}, "model"},
      {{{"user", 5}}, "user"},
      {{{"logprobs", 1}}, "logprobs"},
      {{{"logprobs", true}, {"top_logprobs", 21}}, "top_logprobs"},
      {{{"logprobs", true}, {"top_logprobs", -1}}, "top_logprobs"},
      {{{"top_logprobs", 2}}, "top_logprobs"},  // without logprobs: true
      {{{"logprobs", false}, {"top_logprobs", 2}}, "top_logprobs"},
      {{{"echo", true}}, "echo"},               // a completions field
      {{{"frequency_penalty", 0.5}}, "frequency_penalty"},
      {{{"tools", json::array()}}, "tools"},
      {{{"messages", "hi"}}, "messages"},
      {{{"messages", json::array()}}, "messages"},
      {{{"messages", {5}}}, "messages[0]"},
      {{{"messages", {{{"role", "tool"}, {"content", "x"}}}}}, "messages[0].role"},
      {{{"messages", {{{"role", "assistant"}, {"content", nullptr}, {"tool_calls", json::array({5})}}}}},
       "messages[0].tool_calls"},
      {{{"metadata", 5}}, "metadata"},
      {{{"messages", {{{"role", "user"}}}}}, "messages[0].content"},
      {{{"messages", {{{"role", "user"}, {"content", "x"}, {"name", "bob"}}}}}, "messages[0].name"},
      {{{"messages", {{{"role", "user"}, {"content", {{{"type", "image_url"}}}}}}}}, "messages[0].content[0]"},
  };
  for (const auto& [fields, param] : cases) {
    const auto error = refusal(chat(fields).dump());
    EXPECT_EQ(error.status, 400) << fields.dump();
    EXPECT_EQ(error.param, param) << fields.dump() << " -> " << error.message;
    EXPECT_NE(error.message.find(param), std::string::npos) << error.message;
  }
}

TEST(ParseRequest, TheBodyMustBeAJsonObjectOfValidUtf8) {
  EXPECT_EQ(refusal("").message, "the request body is empty; it must be a JSON object");
  EXPECT_EQ(refusal("[1]").message, "the request body must be a JSON object");
  EXPECT_EQ(refusal("{\"messages\": [{\"role\": \"user\", \"content\": \"\xC3\x28\"}]}").param, "messages[0].content");
  const auto syntax = refusal("{\"stream\": tru}");
  EXPECT_EQ(syntax.param, "stream");
  EXPECT_NE(syntax.message.find("not valid JSON (at byte"), std::string::npos) << syntax.message;
  EXPECT_EQ(syntax.message.find("json.exception"), std::string::npos) << syntax.message;
  // A number too large for a double is nlohmann's out_of_range error, whose text has no position.
  const auto overflow = refusal("{\"max_tokens\": 1e400}");
  EXPECT_EQ(overflow.param, "max_tokens");
  EXPECT_NE(overflow.message.find("): number overflow parsing '1e400'"), std::string::npos) << overflow.message;
  EXPECT_EQ(overflow.message.find("json.exception"), std::string::npos) << overflow.message;
  const auto deep = refusal("{\"prompt\": " + std::string(100, '[') + std::string(100, ']') + "}", Endpoint::kCompletion);
  EXPECT_NE(deep.message.find("deeper than 32 levels"), std::string::npos) << deep.message;
  EXPECT_EQ(deep.param, "prompt");
}

TEST(ParseRequest, PromptsAndTokenIds) {
  EXPECT_EQ(parse_request(R"({"prompt": ["abc"]})", Endpoint::kCompletion, model()).prompt_tokens, 3u);
  EXPECT_EQ(parse_request(R"({"prompt": [0, 255]})", Endpoint::kCompletion, model()).choices[0].prompt,
            (std::vector<TokenId>{0, 255}));
  for (const char* prompt : {"[256]", "[-1]", "[4294967297]", "[18446744073709551615]", "[1.5]", "[1, \"a\"]", "[]",
                             "\"\"", "[\"a\", []]", "[[1], [300]]", "{}", "[{}]"}) {
    const auto error = refusal(std::string("{\"prompt\": ") + prompt + "}", Endpoint::kCompletion);
    EXPECT_EQ(error.status, 400) << prompt;
    EXPECT_EQ(error.param, "prompt") << prompt << " -> " << error.message;
  }
  EXPECT_EQ(refusal(std::string("{\"prompt\": \"") + std::string(64, 'a') + "\"}", Endpoint::kCompletion).param,
            "prompt");  // as long as the context
  const auto listed = parse_request(R"({"prompt": ["ab", [7, 8, 9]], "n": 2, "seed": 5})", Endpoint::kCompletion, model());
  ASSERT_EQ(listed.choices.size(), 4u);  // n per prompt, prompt by prompt
  EXPECT_EQ(listed.choices[1].prompt, (std::vector<TokenId>{'a', 'b'}));
  EXPECT_EQ(listed.choices[2].prompt, (std::vector<TokenId>{7, 8, 9}));
  EXPECT_EQ(listed.choices[3].sampling.seed, 8u);
  EXPECT_EQ(listed.prompt_tokens, 5u);
  EXPECT_EQ(refusal(R"({"prompt": "a", "max_completion_tokens": 2})", Endpoint::kCompletion).param,
            "max_completion_tokens");  // a chat field
}

TEST(ParseRequest, LogprobsAndEcho) {
  const auto chat_request = parse_request(chat({{"logprobs", true}, {"top_logprobs", 20}}).dump(), Endpoint::kChat, model());
  EXPECT_TRUE(chat_request.logprobs);
  EXPECT_TRUE(chat_request.choices[0].logprobs);
  EXPECT_FALSE(chat_request.choices[0].prompt_logprobs);
  EXPECT_EQ(chat_request.choices[0].top_logprobs, 20u);
  EXPECT_FALSE(parse_request(chat({{"logprobs", false}}).dump(), Endpoint::kChat, model()).choices[0].logprobs);

  const auto scored = parse_request(R"({"prompt": "abc", "logprobs": 5, "echo": true, "max_tokens": 0})",
                                    Endpoint::kCompletion, model());
  EXPECT_TRUE(scored.logprobs);
  EXPECT_TRUE(scored.echo);
  EXPECT_EQ(scored.choices[0].max_tokens, 0u);
  EXPECT_TRUE(scored.choices[0].prompt_logprobs);
  EXPECT_EQ(scored.choices[0].top_logprobs, 5u);
  const auto echoed = parse_request(R"({"prompt": "abc", "echo": true})", Endpoint::kCompletion, model());
  EXPECT_TRUE(echoed.echo);
  EXPECT_FALSE(echoed.logprobs);
  EXPECT_FALSE(echoed.choices[0].prompt_logprobs);  // the prompt's text only: nothing to score
  const auto answer_only = parse_request(R"({"prompt": "abc", "logprobs": 0})", Endpoint::kCompletion, model());
  EXPECT_TRUE(answer_only.choices[0].logprobs);
  EXPECT_FALSE(answer_only.choices[0].prompt_logprobs);

  for (const auto& [body, param] : std::vector<std::pair<std::string, std::string>>{
           {R"({"prompt": "a", "logprobs": 6})", "logprobs"},
           {R"({"prompt": "a", "logprobs": true})", "logprobs"},
           {R"({"prompt": "a", "logprobs": -1})", "logprobs"},
           {R"({"prompt": "a", "echo": "yes"})", "echo"},
           {R"({"prompt": "a", "max_tokens": 0})", "max_tokens"},  // only with echo
           {R"({"prompt": "a", "logprobs": 2, "top_logprobs": 2})", "top_logprobs"}}) {
    const auto error = refusal(body, Endpoint::kCompletion);
    EXPECT_EQ(error.status, 400) << body;
    EXPECT_EQ(error.param, param) << body << " -> " << error.message;
    EXPECT_NE(error.message.find(param), std::string::npos) << error.message;
  }
  ServedModel without_tokenizer = test::byte_model(64);
  without_tokenizer.token_bytes = nullptr;
  for (const char* body : {R"({"prompt": [1, 2], "logprobs": 1})", R"({"prompt": [1, 2], "echo": true})"}) {
    try {
      parse_request(body, Endpoint::kCompletion, without_tokenizer);
      ADD_FAILURE() << body << " was accepted without a tokenizer";
    } catch (const HttpError& error) {
      EXPECT_NE(error.message.find("tokenizer"), std::string::npos) << error.message;
    }
  }
}

TEST(ParseRequest, AnotherModelsNameIsNotFound) {
  EXPECT_EQ(refusal(chat({{"model", "gpt-9"}}).dump()).status, 404);
  EXPECT_EQ(refusal(chat({{"model", "/models/tiny"}}).dump()).status, 0);
}

// Whatever the bytes, parse_request answers or refuses with a 4xx whose
// message and field are valid UTF-8; nothing else escapes.
RC_GTEST_PROP(ParseRequest, AnyBytesAreParsedOrRefusedCleanly, ()) {
  const auto valid = chat({{"stop", "x"}, {"n", 2}, {"stream_options", {{"include_usage", true}}}}).dump();
  auto body = *rc::gen::oneOf(rc::gen::arbitrary<std::string>(), rc::gen::just(valid));
  const auto edits = *rc::gen::container<std::vector<std::pair<size_t, char>>>(rc::gen::arbitrary<std::pair<size_t, char>>());
  for (const auto& [at, byte] : edits) {
    if (!body.empty()) body[at % body.size()] = byte;
  }
  try {
    parse_request(body, *rc::gen::element(Endpoint::kChat, Endpoint::kCompletion), model());
  } catch (const HttpError& error) {
    RC_ASSERT(error.status >= 400 && error.status < 500);
    RC_ASSERT(replace_invalid_utf8(error.message) == error.message);
    RC_ASSERT(replace_invalid_utf8(error.param) == error.param);
  }
}

}  // namespace
}  // namespace rvec
