#include "base/error.hpp"

#include <cerrno>
#include <cstring>

namespace rvec {

int exit_code(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kUsage: return 2;
    case ErrorKind::kIncompatible: return 3;
    case ErrorKind::kBadInput: return 4;
    case ErrorKind::kIo: return 5;
  }
  return 1;
}

void fail_errno(const std::string& what) {
  const int err = errno;
  fail(ErrorKind::kIo, "{}: {}", what, std::strerror(err));
}

}  // namespace rvec
