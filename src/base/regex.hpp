// PCRE2 with full Unicode support, wrapped for the few ways rvec uses it.
//
// Patterns are compiled with PCRE2_UTF | PCRE2_UCP, so \s, \w, \d and \p{..}
// follow Unicode, as Hugging Face tokenizers (Oniguruma) and Python's `regex`
// do, and JIT-compiled when the platform allows. A Regex is immutable after
// construction and may be shared between threads: each search gets its own
// match data.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace rvec {

// Whether a search checks that its subject is well-formed UTF-8 (an error
// naming the pattern if not). PCRE2 checks the subject from the start offset
// to its end on every call, so a loop of searches over one long subject is
// quadratic unless the caller checked it once (base/text.hpp:
// first_invalid_utf8) and says so with kChecked. A subject passed as kChecked
// that is not valid UTF-8 is undefined behaviour inside PCRE2.
enum class Utf8 { kCheck, kChecked };

// For a loop of searches over one subject: kChecked if it is valid UTF-8 (one
// pass over it), else kCheck, so that the first search reports the bad byte.
Utf8 check_utf8_once(std::string_view subject);

struct Match {
  size_t begin = 0;
  size_t end = 0;
};

class Regex {
 public:
  // `what` names the pattern in the error thrown for a pattern that does not compile.
  Regex(std::string_view pattern, std::string_view what, bool caseless = false);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;

  // First match starting at or after byte `start` of `subject` (valid UTF-8).
  std::optional<Match> find(std::string_view subject, size_t start = 0, Utf8 utf8 = Utf8::kCheck) const;
  // Like find(), also returning capture group `group` (empty Match if it did not take part).
  std::optional<Match> find_group(std::string_view subject, size_t start, int group, Utf8 utf8 = Utf8::kCheck) const;
  bool matches_somewhere(std::string_view subject) const { return find(subject).has_value(); }
  const std::string& pattern() const { return pattern_; }

 private:
  struct Compiled;
  std::string pattern_;
  std::unique_ptr<Compiled> compiled_;
};

}  // namespace rvec
