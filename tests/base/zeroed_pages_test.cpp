#include "base/zeroed_pages.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <utility>

#include "base/error.hpp"

namespace rvec {
namespace {

TEST(ZeroedPages, StartsAtZeroAndKeepsWhatIsWritten) {
  ZeroedPages<uint32_t> a(1 << 20);  // 4 MiB, more than one page
  ASSERT_EQ(a.size(), size_t{1} << 20);
  EXPECT_TRUE(std::ranges::all_of(a.span(), [](uint32_t x) { return x == 0; }));
  a[0] = 7, a[(1 << 20) - 1] = 9;
  EXPECT_EQ(a[0], 7u);
  EXPECT_EQ(a[(1 << 20) - 1], 9u);
}

TEST(ZeroedPages, MovesOwnershipAndEmptyMapsNothing) {
  ZeroedPages<uint64_t> a(100);
  a[3] = 42;
  ZeroedPages<uint64_t> b = std::move(a);
  EXPECT_EQ(a.size(), 0u);
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(b[3], 42u);
  ZeroedPages<uint64_t> c(5);
  c = std::move(b);
  EXPECT_EQ(c.size(), 100u);
  EXPECT_EQ(c[3], 42u);
  const ZeroedPages<int32_t> empty(0);
  EXPECT_EQ(empty.data(), nullptr);
  EXPECT_TRUE(empty.span().empty());
}

// A length whose byte count does not fit in size_t is refused; it used to
// wrap around and map a few bytes for an array that claims to be huge.
TEST(ZeroedPages, RefusesALengthWhoseBytesOverflow) {
  const size_t wraps_to_four_bytes = SIZE_MAX / sizeof(int32_t) + 2;
  EXPECT_THROW(ZeroedPages<int32_t>{wraps_to_four_bytes}, Error);
}

}  // namespace
}  // namespace rvec
