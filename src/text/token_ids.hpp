// Token ids that come from outside (a command line, a request body), read as
// unsigned 64-bit numbers and checked against the vocabulary before they are
// narrowed to TokenId: 4294967345 is refused, never wrapped to 49, and
// 4294967295 is reported as itself, not as -1.
//
// Errors are usage errors (exit 2; a 400 from the server) naming the id.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

#include "text/tokenizer.hpp"

namespace rvec {

// `id` as a TokenId if it is below `vocab` (the number of ids the model or
// tokenizer has); otherwise an error "<what> <id> is outside the vocabulary".
TokenId checked_token_id(uint64_t id, uint64_t vocab, std::string_view what = "token id");

// Ids written in `text`, separated by commas and/or spaces ("1,2 3").
std::vector<TokenId> parse_token_id_list(std::string_view text, uint64_t vocab);

// A JSON array of ids; an element that is not a non-negative integer below
// `vocab` is refused as `field`[index].
std::vector<TokenId> token_ids_from_json(const nlohmann::json& ids, uint64_t vocab, std::string_view field);

}  // namespace rvec
