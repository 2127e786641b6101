// Byte-level BPE tokenizer read from a Hugging Face `tokenizer.json`
// (Qwen2/Qwen2.5/Qwen3, Llama 3, GPT-2 and kin).
//
// encode(): added tokens (<|im_start|>, ...) are found in the raw text first;
// the text between them is normalised (NFC/NFKC when the file says so), split
// by the pre-tokenizer regexes (PCRE2 with Unicode, the file's own patterns),
// mapped byte by byte to GPT-2's printable code points, and merged by BPE
// (lowest merge rank first, leftmost on ties, as `tokenizers` does).
// decode() reverses the byte map; StreamDecoder never emits half a character.
//
// A Tokenizer is immutable after load() and safe to share between threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace rvec {

using TokenId = int32_t;

class Tokenizer {
 public:
  // `path` is a tokenizer.json or a folder holding one.
  static std::shared_ptr<const Tokenizer> load(const std::string& path);
  // From the parsed content of a tokenizer.json; `origin` names it in errors
  // and is what path() returns (a GGUF file's tokenizer is built this way).
  static std::shared_ptr<const Tokenizer> from_json(const nlohmann::json& root, const std::string& origin);
  ~Tokenizer();

  // `text` must be valid UTF-8 (an error names the first bad byte otherwise).
  std::vector<TokenId> encode(std::string_view text) const;
  // Bytes of the ids, with ill-formed UTF-8 replaced by U+FFFD.
  std::string decode(std::span<const TokenId> ids, bool skip_special = false) const;
  // Raw bytes one token stands for (an added token: its content).
  std::string token_bytes(TokenId id) const;
  // The vocabulary string of a token (byte-level code points), for display.
  const std::string& piece(TokenId id) const;
  std::optional<TokenId> find(std::string_view content) const;  // vocabulary or added token
  bool is_special(TokenId id) const;
  // One past the largest id the file defines.
  size_t size() const;
  const std::string& path() const;

  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

// GPT-2's printable stand-in for byte `b` in a byte-level vocabulary ("Ġ" for a space).
std::string byte_level_symbol(uint8_t b);

// Turns a stream of token ids into text without splitting a character: bytes
// of a multi-byte character cut between tokens are held back until it is whole.
class StreamDecoder {
 public:
  StreamDecoder(const Tokenizer& tokenizer, bool skip_special) : tokenizer_(tokenizer), skip_special_(skip_special) {}
  // Text that became complete with this token (possibly empty).
  std::string push(TokenId id);
  // Whatever is still held back, with broken bytes as U+FFFD.
  std::string finish();
  // Ends a stream the caller cut short (at a token limit): a character
  // still incomplete is dropped rather than shown as U+FFFD.
  void cut() { pending_.clear(); }

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace rvec
