#include "text/token_ids.hpp"

#include <charconv>

#include "base/error.hpp"
#include "base/json.hpp"
#include "base/text.hpp"

namespace rvec {

TokenId checked_token_id(uint64_t id, uint64_t vocab, std::string_view what) {
  if (id >= vocab) fail(ErrorKind::kUsage, "{} {} is outside the vocabulary (0..{})", what, id, vocab - 1);
  return static_cast<TokenId>(id);
}

std::vector<TokenId> parse_token_id_list(std::string_view text, uint64_t vocab) {
  std::vector<TokenId> ids;
  size_t at = 0;
  while (at < text.size()) {
    const size_t end = std::min(text.find_first_of(", ", at), text.size());
    const std::string_view part = text.substr(at, end - at);
    at = end + 1;
    if (part.empty()) continue;
    uint64_t id = 0;
    const auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), id);
    if (ec == std::errc::result_out_of_range) {
      fail(ErrorKind::kUsage, "token id {} is outside the vocabulary (0..{})", part, vocab - 1);
    }
    if (ec != std::errc() || ptr != part.data() + part.size()) {
      fail(ErrorKind::kUsage, "\"{}\" is not a token id (ids are non-negative integers, comma or space separated)",
           printable(part));
    }
    ids.push_back(checked_token_id(id, vocab));
  }
  if (ids.empty()) fail(ErrorKind::kUsage, "no token ids given");
  return ids;
}

std::vector<TokenId> token_ids_from_json(const nlohmann::json& ids, uint64_t vocab, std::string_view field) {
  std::vector<TokenId> out;
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto id = non_negative_integer(ids[i]);
    if (!id) {
      fail(ErrorKind::kUsage, "{}[{}] is {}, not a token id (ids are non-negative integers)", field, i, ids[i].dump());
    }
    out.push_back(checked_token_id(*id, vocab, fmt::format("{}[{}]: token id", field, i)));
  }
  return out;
}

}  // namespace rvec
