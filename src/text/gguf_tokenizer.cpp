#include "text/gguf_tokenizer.hpp"

#include <variant>

#include "base/error.hpp"
#include "base/json.hpp"
#include "base/text.hpp"

namespace rvec {
namespace {

using nlohmann::json;

const std::string* string_key(const GgufMetadata& metadata, std::string_view key, const std::string& origin) {
  const GgufValue* v = find_key(metadata, key);
  if (v == nullptr) return nullptr;
  if (v->is_array() || v->type != GgufValueType::kString) bad_input("{}: key {} must be a string", origin, key);
  return &std::get<std::string>(v->items.front());
}

// An array key's items, each of type `element`; empty when the key is absent.
const std::vector<GgufScalar>& array_key(const GgufMetadata& metadata, std::string_view key, GgufValueType element,
                                         const std::string& origin) {
  static const std::vector<GgufScalar> kNone;
  const GgufValue* v = find_key(metadata, key);
  if (v == nullptr) return kNone;
  if (!v->is_array() || v->element_type != element) {
    bad_input("{}: key {} must be an array of {}", origin, key, gguf_value_type_name(element));
  }
  return v->items;
}

const GgufPreTokenizer* find_pre_tokenizer(std::string_view name) {
  for (const auto& p : kGgufPreTokenizers) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

json pre_tokenizer_json(const GgufPreTokenizer& pre) {
  return {{"type", "Sequence"},
          {"pretokenizers",
           {{{"type", "Split"}, {"pattern", {{"Regex", pre.regex}}}, {"behavior", "Isolated"}, {"invert", false}},
            {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}}}}};
}

// model.vocab and added_tokens from the tokens and their types.
void add_tokens(const GgufMetadata& metadata, const std::string& origin, json& root) {
  const auto& tokens = array_key(metadata, "tokenizer.ggml.tokens", GgufValueType::kString, origin);
  const auto& types = array_key(metadata, "tokenizer.ggml.token_type", GgufValueType::kI32, origin);
  if (tokens.empty()) bad_input("{}: key tokenizer.ggml.tokens is missing or empty", origin);
  if (!types.empty() && types.size() != tokens.size()) {
    bad_input("{}: tokenizer.ggml.token_type has {} entries for {} tokens", origin, types.size(), tokens.size());
  }
  json vocab = json::object(), added = json::array();
  for (size_t id = 0; id < tokens.size(); ++id) {
    const auto& text = std::get<std::string>(tokens[id]);
    const int32_t type = types.empty() ? kGgufNormal : std::get<int32_t>(types[id]);
    if (type == kGgufUnused) continue;
    if (type == kGgufControl || type == kGgufUserDefined) {
      added.push_back({{"id", id}, {"content", text}, {"special", type == kGgufControl}});
    } else if (type == kGgufNormal || type == kGgufUnknown || type == kGgufByte) {
      if (vocab.contains(text)) {
        bad_input("{}: tokenizer.ggml.tokens lists \"{}\" twice (ids {} and {})", origin, printable(text),
                  vocab[text].get<size_t>(), id);
      }
      vocab[text] = id;
    } else {
      bad_input("{}: tokenizer.ggml.token_type of token {} is {}, not a type llama.cpp defines (1 to 6)", origin, id, type);
    }
  }
  root["model"]["vocab"] = std::move(vocab);
  root["added_tokens"] = std::move(added);
}

}  // namespace

std::shared_ptr<const Tokenizer> tokenizer_from_gguf(const GgufMetadata& metadata, const std::string& origin,
                                                     std::string& absence) {
  const std::string* model = string_key(metadata, "tokenizer.ggml.model", origin);
  if (model == nullptr) {
    absence = fmt::format("{}: no tokenizer.ggml.model key, so text cannot be encoded (give token ids instead)", origin);
    return nullptr;
  }
  if (*model != "gpt2") {
    absence = fmt::format("{}: tokenizer.ggml.model is \"{}\"; rvec's tokenizer is byte-level BPE (\"gpt2\"), so give "
                          "token ids instead", origin, printable(*model));
    return nullptr;
  }
  const std::string* pre_name = string_key(metadata, "tokenizer.ggml.pre", origin);
  const auto& merges = array_key(metadata, "tokenizer.ggml.merges", GgufValueType::kString, origin);
  const std::string pre_text = pre_name ? *pre_name : "default";
  if (pre_text == "default" && merges.empty()) {
    absence = fmt::format("{}: the vocabulary is placeholders (tokenizer.ggml.pre \"default\", no merges), so text "
                          "cannot be encoded (give token ids instead)", origin);
    return nullptr;
  }
  const GgufPreTokenizer* pre = find_pre_tokenizer(pre_text);
  if (pre == nullptr) {
    absence = fmt::format("{}: tokenizer.ggml.pre \"{}\" is not a pre-tokenizer rvec knows (it runs qwen2 and "
                          "llama-bpe), so give token ids instead", origin, printable(pre_text));
    return nullptr;
  }
  json root = {{"model", {{"type", "BPE"}}}};
  add_tokens(metadata, origin, root);
  json merge_list = json::array();
  for (const auto& m : merges) merge_list.push_back(std::get<std::string>(m));
  root["model"]["merges"] = std::move(merge_list);
  root["normalizer"] = pre->nfc ? json{{"type", "NFC"}} : json();
  root["pre_tokenizer"] = pre_tokenizer_json(*pre);
  return Tokenizer::from_json(root, origin);
}

}  // namespace rvec
