// Fault injection for rvec's own tests, read from environment variables. They
// exist so that integration tests can kill, slow or stop the real CLI at
// exact points; no user needs them, and unset they cost one getenv each.
//
//   RVEC_TEST_KILL_AFTER_SHARDS=N    merge: SIGKILL itself after the N-th output file
//                                    is complete (like an OOM kill or a power cut)
//   RVEC_TEST_KILL_IN_FILE=N         merge: SIGKILL itself while the N-th file of the
//                                    outputs (1-based, in their order) is being written,
//                                    once half of what it reads is read
//   RVEC_TEST_KILL_WHILE_FINISHING=N merge: SIGKILL itself at the N-th step of finishing
//                                    the outputs (per output: model card written,
//                                    provenance written, markers removed before the rename)
//   RVEC_TEST_SLOW_LOAD_MS=N         serve: the model load takes N ms longer (a slow disk)
//   RVEC_TEST_EXIT_AFTER_SAMPLES=N   eval: exit(3) after N samples are recorded (a crash)
//   RVEC_TEST_RANK_SAMPLE=N          merge: top-k methods guess a tensor's threshold from its
//                                    first N elements instead of 2^16 (so small test
//                                    models take the guessed and the missed path)
//
// Thread-safe: each hook reads the environment; maybe_kill_while_finishing()
// also counts its calls in an atomic.
#pragma once

#include <cstdint>
#include <optional>

namespace rvec::test_hooks {

// The value of the hook's variable as a whole number, if set.
std::optional<uint64_t> kill_after_shards();
std::optional<uint64_t> slow_load_ms();
std::optional<uint64_t> exit_after_samples();
std::optional<uint64_t> rank_sample();

// Raises SIGKILL if `shards_written` equals RVEC_TEST_KILL_AFTER_SHARDS.
void maybe_kill_after_shards(uint64_t shards_written);

// Raises SIGKILL if `file` (1-based) is RVEC_TEST_KILL_IN_FILE and half of
// its `bytes_to_read` are read.
void maybe_kill_in_file(uint64_t file, uint64_t bytes_read, uint64_t bytes_to_read);

// Counts one finishing step; raises SIGKILL at the RVEC_TEST_KILL_WHILE_FINISHING-th.
void maybe_kill_while_finishing();

}  // namespace rvec::test_hooks
