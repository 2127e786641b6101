// What this process has done so far, as the kernel counts it: bytes read and
// written (/proc/self/io) and peak resident memory (getrusage). Reported by
// `--json` results so benches can show that a sweep reads its inputs once.
#pragma once

#include <cstdint>

namespace rvec {

struct ProcessStats {
  uint64_t rchar = 0;        // bytes passed to read-like calls (page cache hits included)
  uint64_t read_bytes = 0;   // bytes fetched from storage
  uint64_t wchar = 0;        // bytes passed to write-like calls
  uint64_t write_bytes = 0;  // bytes sent to storage
  uint64_t peak_rss_bytes = 0;
};

// Fields the kernel does not provide stay 0.
ProcessStats process_stats();

}  // namespace rvec
