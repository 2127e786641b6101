// The tokenizer of a GGUF file: the tokenizer.ggml.* keys turned back into
// the tokenizer.json that Tokenizer::from_json reads, so a .gguf encodes text
// exactly as the Hugging Face folder it was exported from:
//
//   tokenizer.ggml.model   must be "gpt2" (byte-level BPE)
//   tokenizer.ggml.pre     the pre-tokenizer, by llama.cpp's name for its regex
//                          (kGgufPreTokenizers; "qwen2" also normalises to NFC,
//                          as Qwen2's tokenizer.json does)
//   tokenizer.ggml.tokens / token_type   NORMAL (and UNKNOWN, BYTE) tokens form
//                          the vocabulary; CONTROL ones are special added
//                          tokens, USER_DEFINED ones added tokens; UNUSED
//                          ([PAD{i}] rows past the tokenizer) are left out
//   tokenizer.ggml.merges  "a b", in rank order
//
// Pure functions of the metadata: thread-safe.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <string_view>

#include "io/gguf.hpp"
#include "text/tokenizer.hpp"

namespace rvec {

// Pre-tokenizer regexes llama.cpp implements, by the name it knows them under.
struct GgufPreTokenizer {
  std::string_view name;   // tokenizer.ggml.pre
  std::string_view regex;  // the Split regex of tokenizer.json
  bool nfc;                // the Hugging Face tokenizer normalises to NFC first
};
inline constexpr std::array<GgufPreTokenizer, 2> kGgufPreTokenizers = {{
    {"qwen2",
     R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
     true},
    {"llama-bpe",
     R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
     false},
}};

// llama.cpp's token types (tokenizer.ggml.token_type).
enum GgufTokenType : int32_t { kGgufNormal = 1, kGgufUnknown = 2, kGgufControl = 3, kGgufUserDefined = 4, kGgufUnused = 5, kGgufByte = 6 };

// The tokenizer `metadata` describes (`origin` names the file in errors and
// is the tokenizer's path()). Null, with `absence` saying why, when the file
// has no tokenizer rvec runs: no tokenizer.ggml.model, a model other than
// gpt2, a pre-tokenizer rvec does not know, or the placeholder vocabulary
// rvec writes for a folder without tokenizer.json (pre "default", no merges).
// Keys of the wrong type, or tokens and merges that do not fit together, are
// a bad-input error naming the file and key.
std::shared_ptr<const Tokenizer> tokenizer_from_gguf(const GgufMetadata& metadata, const std::string& origin,
                                                     std::string& absence);

}  // namespace rvec
