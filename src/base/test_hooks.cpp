#include "base/test_hooks.hpp"

#include <atomic>
#include <charconv>
#include <csignal>
#include <cstdlib>
#include <cstring>

namespace rvec::test_hooks {
namespace {

std::optional<uint64_t> number_from_env(const char* name) {
  const char* text = std::getenv(name);
  if (text == nullptr) return std::nullopt;
  uint64_t value = 0;
  const char* end = text + std::strlen(text);
  const auto [last, ec] = std::from_chars(text, end, value);
  if (ec != std::errc() || last != end) return std::nullopt;
  return value;
}

}  // namespace

std::optional<uint64_t> kill_after_shards() { return number_from_env("RVEC_TEST_KILL_AFTER_SHARDS"); }
std::optional<uint64_t> slow_load_ms() { return number_from_env("RVEC_TEST_SLOW_LOAD_MS"); }
std::optional<uint64_t> exit_after_samples() { return number_from_env("RVEC_TEST_EXIT_AFTER_SAMPLES"); }
std::optional<uint64_t> rank_sample() { return number_from_env("RVEC_TEST_RANK_SAMPLE"); }

void maybe_kill_after_shards(uint64_t shards_written) {
  if (kill_after_shards() == shards_written) std::raise(SIGKILL);
}

void maybe_kill_in_file(uint64_t file, uint64_t bytes_read, uint64_t bytes_to_read) {
  if (number_from_env("RVEC_TEST_KILL_IN_FILE") == file && 2 * bytes_read >= bytes_to_read) std::raise(SIGKILL);
}

void maybe_kill_while_finishing() {
  static std::atomic<uint64_t> steps = 0;
  if (number_from_env("RVEC_TEST_KILL_WHILE_FINISHING") == ++steps) std::raise(SIGKILL);
}

}  // namespace rvec::test_hooks
