#include "text/tokenizer.hpp"

#include <algorithm>
#include <array>
#include <filesystem>
#include <queue>
#include <unordered_map>

#include "base/error.hpp"
#include "base/json.hpp"
#include "base/text.hpp"
#include "base/regex.hpp"
#include "text/unicode.hpp"

namespace rvec {
namespace {

using nlohmann::json;

// Largest token id a tokenizer.json may use (bounds the tables it sizes).
constexpr uint64_t kMaxTokenId = 16'000'000;

// GPT-2's ByteLevel pre-tokenizer regex (used when ByteLevel has use_regex).
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringMap = std::unordered_map<std::string, TokenId, StringHash, std::equal_to<>>;

// GPT-2 bytes_to_unicode: printable bytes map to themselves, the 68 others
// to U+0100, U+0101, ... in byte order.
std::array<char32_t, 256> byte_to_code_point() {
  std::array<char32_t, 256> map{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    map[b] = printable ? static_cast<char32_t>(b) : next++;
  }
  return map;
}

enum class Normalization { kNone, kNfc, kNfkc };

struct MergeResult {
  uint32_t rank;
  TokenId merged;
};

uint64_t pair_key(TokenId a, TokenId b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

}  // namespace

struct Tokenizer::Impl {
  std::string path;
  StringMap vocab;                      // byte-level string -> id (model vocab and added tokens)
  std::vector<std::string> pieces;      // id -> byte-level string ("" for holes)
  std::vector<std::string> bytes;       // id -> raw bytes
  std::vector<bool> special;            // id -> special added token
  std::vector<std::pair<std::string, TokenId>> added;  // content, id; longest first
  std::unordered_map<uint64_t, MergeResult> merges;
  std::array<TokenId, 256> byte_token{};  // id of each single byte's symbol
  std::vector<Regex> splits;            // pre-tokenizer regexes, applied in order
  Normalization normalization = Normalization::kNone;
  bool ignore_merges = false;

  [[noreturn]] void bad(const std::string& what) const { bad_input("{}: {}", path, what); }
  // node[name] (a bool or a string), `fallback` when absent or null; an error
  // naming `where`.`name` if node is not an object or the field has another type.
  template <typename T>
  T option(const json& node, std::string_view where, const char* name, T fallback) const {
    if (!node.is_object()) bad(fmt::format("{} must be an object", where));
    const auto it = node.find(name);
    if (it == node.end() || it->is_null()) return fallback;
    const bool fits = std::is_same_v<T, bool> ? it->is_boolean() : it->is_string();
    if (!fits) bad(fmt::format("{}.{} must be {}", where, name, std::is_same_v<T, bool> ? "true or false" : "a string"));
    return it->get<T>();
  }

  void check_bpe_options(const json& model) const;
  void load_vocab(const json& model);
  void load_merges(const json& model);
  void load_added(const json& root);
  void load_normalizer(const json& node);
  void load_pre_tokenizer(const json& node, bool& byte_level);
  void set_token(TokenId id, const std::string& piece, std::string raw);

  // `text`: valid UTF-8 (encode() checks it) between added tokens.
  void encode_segment(std::string_view text, std::vector<TokenId>& out) const;
  void encode_word(std::string_view word, std::vector<TokenId>& out) const;
};

namespace {

std::string raw_bytes_of(const std::string& piece, const std::unordered_map<char32_t, uint8_t>& reverse) {
  std::string raw;
  size_t i = 0;
  while (i < piece.size()) {
    const auto lead = static_cast<unsigned char>(piece[i]);
    const size_t len = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
    char32_t cp = len == 1 ? lead : lead & (0x3F >> (len - 1));
    for (size_t k = 1; k < len && i + k < piece.size(); ++k) cp = (cp << 6) | (piece[i + k] & 0x3F);
    const auto it = reverse.find(cp);
    if (it == reverse.end()) return piece;  // not a byte-level string: keep it literally
    raw += static_cast<char>(it->second);
    i += len;
  }
  return raw;
}

}  // namespace

void Tokenizer::Impl::set_token(TokenId id, const std::string& piece, std::string raw) {
  const auto index = static_cast<size_t>(id);
  if (index >= pieces.size()) {
    pieces.resize(index + 1);
    bytes.resize(index + 1);
    special.resize(index + 1, false);
  }
  pieces[index] = piece;
  bytes[index] = std::move(raw);
}

// BPE options that change how text is split. rvec implements none of them, so
// a tokenizer.json that sets one is refused rather than encoded differently.
void Tokenizer::Impl::check_bpe_options(const json& model) const {
  const std::pair<const char*, json> kNeutral[] = {
      {"dropout", 0}, {"byte_fallback", false}, {"continuing_subword_prefix", ""}, {"end_of_word_suffix", ""}};
  for (const auto& [name, neutral] : kNeutral) {
    const auto it = model.find(name);
    if (it != model.end() && !it->is_null() && *it != neutral) {
      bad(fmt::format("model.{} is {}; rvec's byte-level BPE does not implement it", name, it->dump()));
    }
  }
}

void Tokenizer::Impl::load_vocab(const json& model) {
  if (!model.contains("vocab") || !model["vocab"].is_object()) bad("model.vocab is missing or not an object");
  std::unordered_map<char32_t, uint8_t> reverse;
  const auto forward = byte_to_code_point();
  for (int b = 0; b < 256; ++b) reverse[forward[b]] = static_cast<uint8_t>(b);
  for (const auto& [piece, id] : model["vocab"].items()) {
    if (!id.is_number_integer()) bad(fmt::format("model.vocab[\"{}\"] is not an integer id", printable(piece)));
    const auto token = non_negative_integer(id);
    if (!token || *token > kMaxTokenId) {
      bad(fmt::format("model.vocab[\"{}\"] = {} is out of range", printable(piece), id.dump()));
    }
    if (!vocab.emplace(piece, static_cast<TokenId>(*token)).second) bad(fmt::format("model.vocab lists \"{}\" twice", printable(piece)));
    set_token(static_cast<TokenId>(*token), piece, raw_bytes_of(piece, reverse));
  }
  for (int b = 0; b < 256; ++b) {
    std::string symbol;
    append_utf8(symbol, forward[b]);
    const auto it = vocab.find(symbol);
    if (it == vocab.end()) bad(fmt::format("the vocabulary has no symbol for byte 0x{:02X} (not a byte-level BPE)", b));
    byte_token[b] = it->second;
  }
}

void Tokenizer::Impl::load_merges(const json& model) {
  if (!model.contains("merges") || !model["merges"].is_array() || model["merges"].empty()) {
    bad("model.merges is missing or empty (a BPE without merges would encode byte by byte)");
  }
  const auto& list = model["merges"];
  for (size_t rank = 0; rank < list.size(); ++rank) {
    const auto& entry = list[rank];
    std::string left, right;
    if (entry.is_string()) {  // "a b" (tokenizers < 0.20)
      const auto& text = entry.get_ref<const std::string&>();
      const auto space = text.find(' ');
      if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos) {
        bad(fmt::format("model.merges[{}] \"{}\" is not two symbols separated by one space", rank, printable(text)));
      }
      left = text.substr(0, space);
      right = text.substr(space + 1);
    } else if (entry.is_array() && entry.size() == 2 && entry[0].is_string() && entry[1].is_string()) {
      left = entry[0].get<std::string>();  // ["a", "b"] (tokenizers >= 0.20)
      right = entry[1].get<std::string>();
    } else {
      bad(fmt::format("model.merges[{}] is neither \"a b\" nor [\"a\", \"b\"]", rank));
    }
    const auto a = vocab.find(left), b = vocab.find(right), merged = vocab.find(left + right);
    if (a == vocab.end() || b == vocab.end() || merged == vocab.end()) {
      bad(fmt::format("model.merges[{}] (\"{}\" + \"{}\") names a symbol that is not in the vocabulary", rank,
                      printable(left), printable(right)));
    }
    merges.try_emplace(pair_key(a->second, b->second), MergeResult{static_cast<uint32_t>(rank), merged->second});
  }
}

void Tokenizer::Impl::load_added(const json& root) {
  if (!root.contains("added_tokens") || root["added_tokens"].is_null()) return;
  if (!root["added_tokens"].is_array()) bad("added_tokens is not an array");
  for (const auto& token : root["added_tokens"]) {
    if (!token.is_object() || !token.contains("id") || !token["id"].is_number_integer() ||
        !token.contains("content") || !token["content"].is_string()) {
      bad("an entry of added_tokens lacks an integer id or a string content");
    }
    const auto checked = non_negative_integer(token["id"]);
    if (!checked || *checked > kMaxTokenId) bad(fmt::format("added token id {} is out of range", token["id"].dump()));
    const auto id = static_cast<TokenId>(*checked);
    const auto content = token["content"].get<std::string>();
    if (content.empty()) bad(fmt::format("added token {} has empty content", id));
    set_token(id, content, content);
    vocab[content] = id;
    special[static_cast<size_t>(id)] = option(token, "added_tokens[]", "special", false);
    added.emplace_back(content, id);
  }
  std::stable_sort(added.begin(), added.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
}

void Tokenizer::Impl::load_normalizer(const json& node) {
  if (node.is_null()) return;
  const auto type = option<std::string>(node, "normalizer", "type", "");
  if (type == "NFC") {
    normalization = Normalization::kNfc;
  } else if (type == "NFKC") {
    normalization = Normalization::kNfkc;
  } else if (type == "Sequence" && node.contains("normalizers") && node["normalizers"].is_array()) {
    for (const auto& inner : node["normalizers"]) load_normalizer(inner);
  } else {
    bad(fmt::format("normalizer \"{}\" is not supported (rvec supports none, NFC and NFKC)", type));
  }
}

void Tokenizer::Impl::load_pre_tokenizer(const json& node, bool& byte_level) {
  if (node.is_null()) return;
  const auto field = [&]<typename T>(const char* name, T fallback) {
    return option<T>(node, "pre_tokenizer", name, fallback);
  };
  const auto type = field("type", std::string());
  if (type == "Sequence" && node.contains("pretokenizers") && node["pretokenizers"].is_array()) {
    for (const auto& inner : node["pretokenizers"]) load_pre_tokenizer(inner, byte_level);
  } else if (type == "ByteLevel") {
    byte_level = true;
    if (field("add_prefix_space", false)) bad("pre_tokenizer ByteLevel with add_prefix_space is not supported");
    if (field("use_regex", true)) splits.emplace_back(kGpt2Pattern, "GPT-2 pre-tokenizer regex");
  } else if (type == "Split") {
    const auto& pattern = node.value("pattern", json::object());
    if (field("behavior", std::string()) != "Isolated" || field("invert", false)) {
      bad("pre_tokenizer Split is supported only with behavior \"Isolated\" and invert false");
    }
    if (pattern.contains("Regex") && pattern["Regex"].is_string()) {
      splits.emplace_back(pattern["Regex"].get<std::string>(), path + ": pre_tokenizer regex");
    } else {
      bad("pre_tokenizer Split needs a {\"Regex\": ...} pattern");
    }
  } else {
    bad(fmt::format("pre_tokenizer \"{}\" is not supported (rvec supports ByteLevel, Split and Sequence)", type));
  }
}

std::shared_ptr<const Tokenizer> Tokenizer::load(const std::string& given) {
  namespace fs = std::filesystem;
  const std::string path = fs::is_directory(given) ? (fs::path(given) / "tokenizer.json").string() : given;
  if (!fs::exists(path)) bad_input("{}: no tokenizer.json there", path);
  return from_json(read_json_file(path), path);
}

std::shared_ptr<const Tokenizer> Tokenizer::from_json(const json& root, const std::string& origin) {
  auto impl = std::make_unique<Impl>();
  impl->path = origin;
  if (!root.is_object() || !root.contains("model") || !root["model"].is_object()) impl->bad("no \"model\" object");
  const auto& model = root["model"];
  const auto type = impl->option<std::string>(model, "model", "type", "BPE");
  if (type != "BPE") impl->bad(fmt::format("model type \"{}\" is not supported (only byte-level BPE)", printable(type)));
  impl->check_bpe_options(model);
  impl->ignore_merges = impl->option(model, "model", "ignore_merges", false);
  impl->load_vocab(model);
  impl->load_merges(model);
  impl->load_added(root);
  impl->load_normalizer(root.value("normalizer", json()));
  bool byte_level = false;
  impl->load_pre_tokenizer(root.value("pre_tokenizer", json()), byte_level);
  if (!byte_level) impl->bad("the pre_tokenizer has no ByteLevel step (not a byte-level BPE)");
  return std::make_shared<const Tokenizer>(std::move(impl));
}

std::string byte_level_symbol(uint8_t b) {
  static const auto map = byte_to_code_point();
  std::string symbol;
  append_utf8(symbol, map[b]);
  return symbol;
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

// BPE over one pre-token: start from one symbol per byte and repeatedly merge
// the adjacent pair with the lowest rank (leftmost first on ties). A heap of
// candidate pairs keeps this O(n log n) for adversarially long words; stale
// entries are recognised by re-checking both symbols when popped.
void Tokenizer::Impl::encode_word(std::string_view word, std::vector<TokenId>& out) const {
  if (ignore_merges) {
    std::string mapped;
    for (unsigned char b : word) mapped += pieces[static_cast<size_t>(byte_token[b])];
    if (const auto it = vocab.find(mapped); it != vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }
  struct Symbol {
    TokenId id;
    int prev, next;
  };
  std::vector<Symbol> symbols(word.size());
  for (size_t i = 0; i < word.size(); ++i) {
    symbols[i] = {byte_token[static_cast<unsigned char>(word[i])], int(i) - 1,
                  i + 1 < word.size() ? int(i + 1) : -1};
  }
  struct Candidate {
    uint32_t rank;
    int left;
    TokenId left_id, right_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  const auto offer = [&](int left) {
    if (left < 0 || symbols[left].next < 0) return;
    const auto a = symbols[left].id, b = symbols[symbols[left].next].id;
    if (const auto it = merges.find(pair_key(a, b)); it != merges.end()) heap.push({it->second.rank, left, a, b});
  };
  for (int i = 0; i + 1 < int(symbols.size()); ++i) offer(i);
  while (!heap.empty()) {
    const auto top = heap.top();
    heap.pop();
    Symbol& left = symbols[top.left];
    if (left.id != top.left_id || left.next < 0 || symbols[left.next].id != top.right_id) continue;  // stale
    const int gone = left.next;
    left.id = merges.at(pair_key(top.left_id, top.right_id)).merged;
    left.next = symbols[gone].next;
    if (left.next >= 0) symbols[left.next].prev = top.left;
    symbols[gone].id = -1;
    offer(left.prev);
    offer(top.left);
  }
  for (int i = 0; i >= 0 && !symbols.empty(); i = symbols[i].next) out.push_back(symbols[i].id);
}

void Tokenizer::Impl::encode_segment(std::string_view raw, std::vector<TokenId>& out) const {
  std::string normalized;
  if (normalization == Normalization::kNfc) normalized = nfc(raw);
  if (normalization == Normalization::kNfkc) normalized = nfkc(raw);
  const std::string_view text = normalization == Normalization::kNone ? raw : std::string_view(normalized);
  // Each regex splits every current piece into its matches and the gaps between them.
  // encode() checked the text is valid UTF-8, and so are its normal forms and
  // the pieces (matches end on character boundaries): PCRE2 need not check again.
  const Utf8 utf8 = Utf8::kChecked;
  std::vector<std::string_view> pieces_now{text};
  for (const auto& regex : splits) {
    std::vector<std::string_view> next;
    for (const auto piece : pieces_now) {
      size_t emitted = 0, search = 0;
      while (search < piece.size()) {
        const auto match = regex.find(piece, search, utf8);
        if (!match) break;
        if (match->end == match->begin) {  // an empty match splits nothing: step over one character
          const auto lead = static_cast<unsigned char>(piece[match->begin]);
          search = match->begin + (lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4);
          continue;
        }
        if (match->begin > emitted) next.push_back(piece.substr(emitted, match->begin - emitted));
        next.push_back(piece.substr(match->begin, match->end - match->begin));
        emitted = search = match->end;
      }
      if (emitted < piece.size()) next.push_back(piece.substr(emitted));
    }
    pieces_now = std::move(next);
  }
  for (const auto word : pieces_now) encode_word(word, out);
}

std::vector<TokenId> Tokenizer::encode(std::string_view text) const {
  if (const auto bad_at = first_invalid_utf8(text)) bad_input("text to tokenize is not valid UTF-8 (byte {})", *bad_at);
  std::vector<TokenId> out;
  size_t at = 0;
  while (at < text.size()) {
    // Leftmost added token; among those starting there, the longest (the list is sorted longest first).
    size_t best_pos = std::string_view::npos;
    const std::pair<std::string, TokenId>* best = nullptr;
    for (const auto& token : impl_->added) {
      const auto pos = text.find(token.first, at);
      if (pos < best_pos) best_pos = pos, best = &token;
    }
    const size_t end = best ? best_pos : text.size();
    if (end > at) impl_->encode_segment(text.substr(at, end - at), out);
    if (!best) break;
    out.push_back(best->second);
    at = best_pos + best->first.size();
  }
  return out;
}

std::string Tokenizer::token_bytes(TokenId id) const {
  if (id < 0 || static_cast<size_t>(id) >= impl_->bytes.size()) return {};
  return impl_->bytes[static_cast<size_t>(id)];
}

std::string Tokenizer::decode(std::span<const TokenId> ids, bool skip_special) const {
  std::string raw;
  for (const auto id : ids) {
    if (skip_special && is_special(id)) continue;
    raw += token_bytes(id);
  }
  return replace_invalid_utf8(raw);
}

const std::string& Tokenizer::piece(TokenId id) const {
  static const std::string kNone;
  if (id < 0 || static_cast<size_t>(id) >= impl_->pieces.size()) return kNone;
  return impl_->pieces[static_cast<size_t>(id)];
}

std::optional<TokenId> Tokenizer::find(std::string_view content) const {
  const auto it = impl_->vocab.find(content);
  if (it == impl_->vocab.end()) return std::nullopt;
  return it->second;
}

bool Tokenizer::is_special(TokenId id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->special.size() && impl_->special[static_cast<size_t>(id)];
}

size_t Tokenizer::size() const { return impl_->pieces.size(); }
const std::string& Tokenizer::path() const { return impl_->path; }

std::string StreamDecoder::push(TokenId id) {
  if (skip_special_ && tokenizer_.is_special(id)) return {};
  pending_ += tokenizer_.token_bytes(id);
  const size_t ready = complete_utf8_prefix(pending_);
  std::string out = replace_invalid_utf8(std::string_view(pending_).substr(0, ready));
  pending_.erase(0, ready);
  return out;
}

std::string StreamDecoder::finish() {
  std::string out = replace_invalid_utf8(pending_);
  pending_.clear();
  return out;
}

}  // namespace rvec
