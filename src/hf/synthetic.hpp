// Deterministic generated model families for tests and benches:
//   pre    = random weights (seeded)
//   post   = pre + a small delta      (a "reasoning" fine-tune of pre)
//   target = pre + another delta      (a "language" fine-tune of pre)
// Every value is a pure function of (seed, tensor, element index), so the
// three models are written one after another in bounded memory, and the same
// command always produces the same bytes.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

#include "hf/shapes.hpp"

namespace rvec {

struct FamilyOptions {
  std::string shape = "tiny";
  uint64_t seed = 1;
  DType dtype = DType::kBF16;
  std::optional<bool> tied;         // default: the shape's own
  uint64_t target_extra_rows = 0;   // extra embedding (and lm_head) rows in target
  double post_delta = 0.02;         // delta size relative to the weights' scale
  double target_delta = 0.02;
  bool unrelated_post = false;      // post derived from a different random parent
  bool target_from_post = false;    // target = post + its delta (instead of pre + delta)
  bool sparse = false;              // real headers, data left as holes (zeros)
  uint64_t max_shard_bytes = kDefaultMaxShardBytes;
  bool overwrite = false;
};

// Called with (bytes done, bytes total) while writing.
using ProgressFn = std::function<void(uint64_t, uint64_t)>;

// Writes out/pre, out/post and out/target. Returns the bytes written.
uint64_t write_family(const std::filesystem::path& out, const FamilyOptions& options,
                      const ProgressFn& progress = {});

}  // namespace rvec
