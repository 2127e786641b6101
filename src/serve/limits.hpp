// The limits `rvec serve` enforces, in one place. README.md ("What rvec
// guarantees about rvec serve") and docs/engine.md ("Server limits") quote
// these numbers; change them together.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace rvec::serve_limits {

// Connections open at once (`--max-connections`). Each open connection has a
// thread of its own, so this also bounds the threads that serve HTTP; one
// more connection is answered 503 and closed at once.
inline constexpr size_t kMaxConnections = 512;

// New connections waiting for the server to accept them (the kernel caps
// this at net.core.somaxconn).
inline constexpr size_t kListenBacklog = 1024;

// A request (request line, headers and body) must arrive in full within this
// time of its first byte, or it is answered 408 and the connection closed.
inline constexpr std::chrono::seconds kRequestDeadline{30};

// The longest pause allowed while a request arrives, and the longest an idle
// keep-alive connection is kept open.
inline constexpr std::chrono::seconds kIdleTimeout{5};

// A client that takes no bytes of its response for this long is dropped.
inline constexpr std::chrono::seconds kWriteTimeout{60};

// After refusing a request whose body it did not read, the server reads and
// discards what the client still sends for at most this long before closing,
// so that the client sees the refusal instead of a reset connection.
inline constexpr std::chrono::seconds kLingerTime{2};

// Requests served over one keep-alive connection before it is closed.
inline constexpr size_t kKeepAliveRequests = 100;

// The request line and headers together.
inline constexpr size_t kMaxHeaderBytes = 64 * 1024;

// A request body holds at most kBodyBytesBase plus kBodyBytesPerContextToken
// per token of the context (`--context`): a prompt that fills the context
// takes about 4 bytes of JSON per token as text (24 with every character
// escaped as \uXXXX) and at most 12 as token ids, so the largest legal
// request fits with room to spare, and nothing much larger is read into
// memory. With the default context of 4096 tokens the limit is 1.25 MiB.
inline constexpr size_t kBodyBytesBase = 1 << 20;
inline constexpr size_t kBodyBytesPerContextToken = 64;
constexpr size_t max_body_bytes(size_t max_context) {
  return kBodyBytesBase + max_context * kBodyBytesPerContextToken;
}

// JSON nesting in a request body (an OpenAI request nests at most 5 levels).
inline constexpr size_t kMaxJsonDepth = 32;

// `stop`: at most this many strings of at most this many bytes each.
inline constexpr size_t kMaxStopStrings = 16;
inline constexpr size_t kMaxStopStringBytes = 256;

// `n`: choices per request.
inline constexpr size_t kMaxChoices = 64;

// Alternatives listed per token: chat's `top_logprobs` and the completions
// `logprobs` (OpenAI's limits).
inline constexpr int64_t kMaxTopLogprobs = 20;
inline constexpr int64_t kMaxCompletionLogprobs = 5;

// glibc malloc arenas for the whole server process. With one arena per
// thread (glibc's default allows 8 per core), memory freed after a burst of
// requests stays cached in each arena; a few shared arenas reuse it.
inline constexpr int kMallocArenas = 2;

// After a request of at least this many bytes, the memory its parsing freed
// is handed back to the system (malloc_trim) rather than kept cached.
inline constexpr size_t kTrimAfterRequestBytes = 256 * 1024;

}  // namespace rvec::serve_limits
