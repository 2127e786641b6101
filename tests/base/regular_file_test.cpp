#include "base/regular_file.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <future>

#include "base/error.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

using test::TempDir;

// The message and kind of the Error `action` throws ("" if it throws none).
template <typename Action>
std::pair<std::string, ErrorKind> error_of(Action action) {
  try {
    action();
  } catch (const Error& e) {
    return {e.what(), e.kind()};
  }
  return {"", ErrorKind::kIo};
}

TEST(RegularFile, FifoIsRefusedWithoutWaitingForAWriter) {
  TempDir dir;
  const std::string fifo = (dir / "model.safetensors").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  auto opening = std::async(std::launch::async, [&] { return error_of([&] { open_regular_file(fifo); }); });
  if (opening.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    const FileDescriptor writer(::open(fifo.c_str(), O_WRONLY | O_NONBLOCK));  // lets the blocked open return
    FAIL() << "opening a FIFO blocked";
  }
  const auto [message, kind] = opening.get();
  EXPECT_EQ(message, fifo + ": not a regular file (a FIFO)");
  EXPECT_EQ(kind, ErrorKind::kBadInput);
}

TEST(RegularFile, OutputThatIsAFifoIsAUsageError) {
  TempDir dir;
  const std::string fifo = (dir / "results.jsonl").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  const auto [message, kind] = error_of([&] { open_regular_file(fifo, O_WRONLY | O_CREAT | O_APPEND); });
  EXPECT_EQ(message, fifo + ": not a regular file (a FIFO)");
  EXPECT_EQ(kind, ErrorKind::kUsage);
  EXPECT_EQ(error_of([&] { write_regular_file(fifo, "x"); }).first, fifo + ": not a regular file (a FIFO)");
}

TEST(RegularFile, FoldersAndDevicesAreNamed) {
  TempDir dir;
  EXPECT_EQ(error_of([&] { read_small_file(dir.path().string(), 100); }).first,
            dir.path().string() + ": not a regular file (a folder)");
  EXPECT_EQ(error_of([] { read_small_file("/dev/zero", 100); }).first,
            "/dev/zero: not a regular file (a character device)");
  const auto [message, kind] = error_of([&] { read_small_file((dir / "missing").string(), 100); });
  EXPECT_EQ(message, (dir / "missing").string() + ": cannot open: No such file or directory");
  EXPECT_EQ(kind, ErrorKind::kIo);
}

TEST(RegularFile, ReadsWritesAndCopiesRegularFiles) {
  TempDir dir;
  const std::string path = (dir / "a.txt").string();
  write_regular_file(path, "hello\nworld");
  EXPECT_EQ(read_small_file(path, 100), "hello\nworld");
  EXPECT_NE(error_of([&] { read_small_file(path, 5); }).first.find("11 bytes, more than the 5 allowed"),
            std::string::npos);
  copy_regular_file(path, (dir / "b.txt").string());
  EXPECT_EQ(test::read_file(dir / "b.txt"), "hello\nworld");
  const FileDescriptor fd = open_regular_file(path);
  EXPECT_EQ(::fcntl(fd.get(), F_GETFL) & O_NONBLOCK, 0);  // cleared again
}

TEST(RegularFile, LineReaderReturnsEveryLineOfAnySize) {
  TempDir dir;
  const std::string long_line(200'000, 'x');
  test::write_file(dir / "a.jsonl", "one\n\n" + long_line + "\nlast without newline");
  LineReader reader((dir / "a.jsonl").string());
  std::vector<std::string> lines;
  for (std::string line; reader.next(line);) lines.push_back(line);
  EXPECT_EQ(lines, (std::vector<std::string>{"one", "", long_line, "last without newline"}));
  test::write_file(dir / "empty", "");
  std::string line;
  EXPECT_FALSE(LineReader((dir / "empty").string()).next(line));
}

}  // namespace
}  // namespace rvec
