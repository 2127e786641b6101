#include "base/process_stats.hpp"

#include <sys/resource.h>

#include <fstream>
#include <string>

namespace rvec {

ProcessStats process_stats() {
  ProcessStats stats;
  std::ifstream io("/proc/self/io");
  std::string key;
  uint64_t value = 0;
  while (io >> key >> value) {
    if (key == "rchar:") stats.rchar = value;
    else if (key == "read_bytes:") stats.read_bytes = value;
    else if (key == "wchar:") stats.wchar = value;
    else if (key == "write_bytes:") stats.write_bytes = value;
  }
  struct rusage usage {};
  if (::getrusage(RUSAGE_SELF, &usage) == 0) stats.peak_rss_bytes = static_cast<uint64_t>(usage.ru_maxrss) * 1024;
  return stats;
}

}  // namespace rvec
