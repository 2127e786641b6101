#include "text/token_ids.hpp"

#include <gtest/gtest.h>

#include "base/error.hpp"

namespace rvec {
namespace {

using nlohmann::json;

template <typename Action>
std::string usage_error(Action action) {
  try {
    action();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUsage) << e.what();
    return e.what();
  }
  return "";
}

TEST(TokenIds, ListsParseAsUnsigned64BitAndStayInTheVocabulary) {
  EXPECT_EQ(parse_token_id_list("1, 2 95,,", 96), (std::vector<TokenId>{1, 2, 95}));
  EXPECT_EQ(usage_error([] { parse_token_id_list("1,4294967345", 96); }),
            "token id 4294967345 is outside the vocabulary (0..95)");  // not 49
  EXPECT_EQ(usage_error([] { parse_token_id_list("4294967295", 96); }),
            "token id 4294967295 is outside the vocabulary (0..95)");  // not -1
  EXPECT_EQ(usage_error([] { parse_token_id_list("96", 96); }), "token id 96 is outside the vocabulary (0..95)");
  EXPECT_EQ(usage_error([] { parse_token_id_list("99999999999999999999", 96); }),
            "token id 99999999999999999999 is outside the vocabulary (0..95)");
  EXPECT_EQ(usage_error([] { parse_token_id_list("-1", 96); }),
            "\"-1\" is not a token id (ids are non-negative integers, comma or space separated)");
  EXPECT_EQ(usage_error([] { parse_token_id_list("0x10", 96); }),
            "\"0x10\" is not a token id (ids are non-negative integers, comma or space separated)");
  EXPECT_EQ(usage_error([] { parse_token_id_list(" , ", 96); }), "no token ids given");
}

TEST(TokenIds, JsonIdsNameTheElement) {
  EXPECT_EQ(token_ids_from_json(json::array({0, 7, 95}), 96, "prompt"), (std::vector<TokenId>{0, 7, 95}));
  EXPECT_EQ(usage_error([] {
              token_ids_from_json(json::array({1, 4294967345ull}), 96, "prompt");
            }),
            "prompt[1]: token id 4294967345 is outside the vocabulary (0..95)");
  EXPECT_EQ(usage_error([] { token_ids_from_json(json::array({-1}), 96, "prompt"); }),
            "prompt[0] is -1, not a token id (ids are non-negative integers)");
  EXPECT_EQ(usage_error([] { token_ids_from_json(json::parse("[1e20]"), 96, "prompt"); }),
            "prompt[0] is 1e+20, not a token id (ids are non-negative integers)");
}

}  // namespace
}  // namespace rvec
