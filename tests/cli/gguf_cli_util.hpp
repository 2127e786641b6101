// Driving `rvec export-gguf` and making rounded copies of a model through the
// real CLI, for the GGUF tests.
#pragma once

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace rvec::test {

inline std::string quoted(const std::filesystem::path& p) { return "'" + p.string() + "'"; }

// A model of the shipped demo family, and stories260K from the shared data.
inline std::filesystem::path demo_family(const std::string& member) { return source_dir() / "demo" / "family" / member; }
inline std::filesystem::path stories260k() { return source_dir() / ".." / "shared" / "data" / "stories260K"; }

// A prompt every demo family member reads: its <|endoftext|> <|im_start|>
// (the last token ids but one of demo/family's tokenizer.json).
inline const std::vector<int32_t> kFamilyPrompt = {573, 574};
inline const std::string kFamilyPromptIds = fmt::format("{}", fmt::join(kFamilyPrompt, ","));  // as `--ids` takes it

inline void export_gguf(const std::filesystem::path& model, const std::filesystem::path& out, const std::string& type,
                        const std::string& extra = "") {
  const auto r = run_rvec("export-gguf " + quoted(model) + " -o " + quoted(out) + " --type " + type + " -q " + extra);
  ASSERT_EQ(r.exit_code, 0) << r.output;
}

// A copy of `model` with every tensor rounded to `dtype`: target + 0 * (target - target).
inline std::filesystem::path rounded_copy(const std::filesystem::path& model, const std::string& dtype,
                                          const std::filesystem::path& out) {
  const auto r = run_rvec("merge --pre " + quoted(model) + " --post " + quoted(model) + " --target " + quoted(model) +
                          " -w 0 --dtype " + dtype + " -o " + quoted(out) + " -q");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return out;
}

}  // namespace rvec::test
