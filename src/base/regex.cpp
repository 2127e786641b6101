#include "base/regex.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "base/error.hpp"
#include "base/text.hpp"

namespace rvec {

struct Regex::Compiled {
  pcre2_code* code = nullptr;
  ~Compiled() { pcre2_code_free(code); }
};

Regex::Regex(std::string_view pattern, std::string_view what, bool caseless)
    : pattern_(pattern), compiled_(std::make_unique<Compiled>()) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  const uint32_t options = PCRE2_UTF | PCRE2_UCP | (caseless ? PCRE2_CASELESS : 0);
  compiled_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern_.data()), pattern_.size(), options, &error,
                                  &offset, nullptr);
  if (compiled_->code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    fail(ErrorKind::kUsage, "{} \"{}\": {} at offset {}", what, pattern_, reinterpret_cast<const char*>(message),
         offset);
  }
  pcre2_jit_compile(compiled_->code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter on failure
}

Utf8 check_utf8_once(std::string_view subject) {
  return first_invalid_utf8(subject) ? Utf8::kCheck : Utf8::kChecked;
}

Regex::~Regex() = default;
Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;

std::optional<Match> Regex::find(std::string_view subject, size_t start, Utf8 utf8) const {
  return find_group(subject, start, 0, utf8);
}

std::optional<Match> Regex::find_group(std::string_view subject, size_t start, int group, Utf8 utf8) const {
  using MatchData = std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)>;
  MatchData data(pcre2_match_data_create_from_pattern(compiled_->code, nullptr), &pcre2_match_data_free);
  const int rc = pcre2_match(compiled_->code, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), start,
                             utf8 == Utf8::kChecked ? PCRE2_NO_UTF_CHECK : 0, data.get(), nullptr);
  if (rc == PCRE2_ERROR_NOMATCH) return std::nullopt;
  if (rc < 0) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(rc, message, sizeof(message));
    bad_input("regex \"{}\" failed on the input: {}", pattern_, reinterpret_cast<const char*>(message));
  }
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data.get());
  if (group >= rc || ovector[2 * group] == PCRE2_UNSET) return Match{};
  return Match{ovector[2 * group], ovector[2 * group + 1]};
}

}  // namespace rvec
