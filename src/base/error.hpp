// rvec's one error style.
//
// Every failure caused by something outside the program (a corrupt file, two
// models that do not fit together, a bad flag, a full disk) is thrown as an
// rvec::Error whose message is one line that names the file, tensor or field
// concerned and says what is wrong, leveldb-style:
//
//   pre/model.safetensors: not a safetensors file (header length 912 runs past the end of the 100-byte file)
//
// The CLI catches it at the top, prints "rvec: error: <message>" and exits
// with the code that belongs to the error's kind. Nothing else is thrown on
// purpose; anything else reaching the top is a bug.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace rvec {

enum class ErrorKind {
  kUsage,         // a bad flag or argument: exit 2
  kIncompatible,  // readable models that cannot be combined: exit 3
  kBadInput,      // an unreadable, corrupt or malicious input: exit 4
  kIo,            // the system refused (disk full, permission, I/O error): exit 5
};

// Process exit code for each kind of error (documented in README).
int exit_code(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, std::string message)
      : std::runtime_error(std::move(message)), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

template <typename... Args>
[[noreturn]] void fail(ErrorKind kind, fmt::format_string<Args...> format, Args&&... args) {
  throw Error(kind, fmt::format(format, std::forward<Args>(args)...));
}

template <typename... Args>
[[noreturn]] void bad_input(fmt::format_string<Args...> format, Args&&... args) {
  fail(ErrorKind::kBadInput, format, std::forward<Args>(args)...);
}

template <typename... Args>
[[noreturn]] void io_error(fmt::format_string<Args...> format, Args&&... args) {
  fail(ErrorKind::kIo, format, std::forward<Args>(args)...);
}

// "<what>: <strerror(errno)>" as an I/O error; reads errno at the call.
[[noreturn]] void fail_errno(const std::string& what);

}  // namespace rvec
