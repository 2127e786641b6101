#include "io/sequential_file.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "base/error.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

std::vector<std::byte> pattern(size_t n, uint32_t seed) {
  std::vector<std::byte> out(n);
  uint32_t x = seed;
  for (auto& b : out) {
    x = x * 1664525u + 1013904223u;
    b = static_cast<std::byte>(x >> 24);
  }
  return out;
}

// Appends `data` in pieces of awkward sizes, then finishes at `size`.
void write_in_pieces(SequentialFile& file, const std::vector<std::byte>& data, uint64_t size) {
  const size_t pieces[] = {8, 4095, 1 << 20, 3, 9 << 20, 77};
  size_t at = 0;
  for (size_t i = 0; at < data.size(); ++i) {
    const size_t n = std::min(pieces[i % std::size(pieces)], data.size() - at);
    file.append(std::span(data.data() + at, n));
    at += n;
  }
  file.finish(size);
}

TEST(SequentialFile, DirectAndPageCacheWritesGiveTheSameBytes) {
  test::TempDir dir;
  const auto data = pattern((20 << 20) + 12345, 7);  // two full chunks and a tail
  SequentialFile direct((dir / "direct").string());
  SequentialFile cached((dir / "cached").string(), SequentialFile::Mode::kPageCache);
  EXPECT_FALSE(cached.direct());
  write_in_pieces(direct, data, data.size());
  write_in_pieces(cached, data, data.size());
  const std::string expected(reinterpret_cast<const char*>(data.data()), data.size());
  EXPECT_EQ(test::read_file(dir / "direct"), expected);
  EXPECT_EQ(test::read_file(dir / "cached"), expected);
}

TEST(SequentialFile, FinishExtendsAShortFileWithZeros) {
  test::TempDir dir;
  SequentialFile file((dir / "sparse").string());
  const auto head = pattern(100, 3);
  file.append(head);
  file.finish(10'000);
  const std::string got = test::read_file(dir / "sparse");
  ASSERT_EQ(got.size(), 10'000u);
  EXPECT_EQ(got.substr(0, 100), std::string(reinterpret_cast<const char*>(head.data()), 100));
  EXPECT_EQ(got.substr(100), std::string(9'900, '\0'));
}

TEST(SequentialFile, AnUncreatableFileIsAnErrorNamingIt) {
  test::TempDir dir;
  try {
    SequentialFile file((dir / "no" / "such" / "folder").string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no/such/folder: cannot open"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace rvec
