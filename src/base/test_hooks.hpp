// Fault injection for rvec's own tests, read from environment variables. They
// exist so that integration tests can kill, slow or stop the real CLI at
// exact points; no user needs them, and unset they cost one getenv each.
//
//   RVEC_TEST_KILL_AFTER_SHARDS=N    merge: SIGKILL itself after the N-th output file
//                                    is complete (like an OOM kill or a power cut)
//   RVEC_TEST_SLOW_LOAD_MS=N         serve: the model load takes N ms longer (a slow disk)
//   RVEC_TEST_EXIT_AFTER_SAMPLES=N   eval: exit(3) after N samples are recorded (a crash)
//
// Thread-safe: each hook only reads the environment.
#pragma once

#include <cstdint>
#include <optional>

namespace rvec::test_hooks {

// The value of the hook's variable as a whole number, if set.
std::optional<uint64_t> kill_after_shards();
std::optional<uint64_t> slow_load_ms();
std::optional<uint64_t> exit_after_samples();

// Raises SIGKILL if `shards_written` equals RVEC_TEST_KILL_AFTER_SHARDS.
void maybe_kill_after_shards(uint64_t shards_written);

}  // namespace rvec::test_hooks
