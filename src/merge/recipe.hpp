// A merge described as data: what `rvec merge/apply/extract` flags build and
// what `rvec run recipe.yaml` reads. Every output stores its recipe as
// rvec_recipe.yaml, so `rvec run OUT/rvec_recipe.yaml` redoes the job.
//
//   kind: merge                 # merge | apply | extract
//   pre: models/Qwen2.5-32B-Instruct
//   post: models/s1-32B
//   target: models/EZO-Qwen2.5-32B-Instruct
//   weights: [0.25, 0.5, 0.75, 1.0]
//   output: out/sweep
//   dtype: BF16                 # optional; default: the target's
//   max_shard_size: 5GB
//   max_nonfinite: 0            # optional; values that may become NaN/Inf per output
//   rules:                      # first match wins
//     - match: "embed_tokens|lm_head"
//       scale: 0
//     - layers: 0-7
//       scale: 0.5
//   method: ties                # optional; default task_arithmetic
//   params:                     # the method's parameters (merge/param_setting.hpp forms)
//     density: 0.2
//
// Several vectors replace pre/post (or vector) by a list, each entry a
// pre/post pair or a saved vector, with its own weight and per-vector
// parameters (a number, a gradient over the layers, or filter conditions):
//
//   vectors:
//     - {pre: A, post: B, weight: 0.5, density: [0.1, 0.3]}
//     - {vector: saved-vector, weight: 1}
//
// A merge can also build variants of itself in the same read pass: the same
// vectors by another method, with other parameters and weights. The merge's
// own outputs then go to OUTPUT/w<w>/ and each variant's to
// OUTPUT/<name>/w<w>/ (GGUF: w<w>.gguf), each with its own self-contained
// rvec_recipe.yaml:
//
//   variants:
//     - {name: ties20, method: ties, params: {density: 0.2}, weights: [1, 1.5]}
//     - {name: dare, method: dare_ties, params: {density: 0.3, seed: 1}}   # weights: the merge's
//
// Relative paths are taken relative to the current directory.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "merge/job.hpp"

namespace rvec {

struct RecipeRule {
  std::optional<std::string> match;
  std::optional<std::string> layers;  // "A-B" or "N"
  double scale = 0;
};

// One entry of a recipe's `vectors:` list.
struct RecipeVector {
  std::string pre, post;  // post - pre
  std::string vector;     // or a saved vector
  ParamSettings params;   // weight and the method's per-vector parameters
};

// One entry of a merge recipe's `variants:` list.
struct RecipeVariant {
  std::string name;             // its folder under the output
  std::string method;           // empty: task_arithmetic
  ParamSettings params;         // the method's parameters
  std::vector<double> weights;  // empty: the merge's
};

struct Recipe {
  JobKind kind = JobKind::kMerge;
  std::string pre, post, target, vector;
  std::vector<RecipeVector> vectors;  // instead of pre/post or vector
  std::vector<double> weights;
  std::string output;
  std::optional<std::string> dtype;
  std::string max_shard_size = "5GB";
  bool overwrite = false;
  uint64_t max_nonfinite = 0;  // NaN/Inf values a merge may create per output before it stops
  std::vector<RecipeRule> rules;
  std::string method;    // empty: task_arithmetic
  ParamSettings params;  // the method's parameters
  std::string format = "safetensors";         // or "gguf"
  std::optional<std::string> gguf_type;       // gguf: "q4_k_m", ...
  std::optional<std::string> split_max_size;  // gguf: "50GB"
  std::vector<RecipeVariant> variants;        // merge: built in the same read pass
  // A mergekit config's: every vector needs a weight for every tensor (rvec's
  // own recipes give 1 where their filters leave a tensor out). Not saved.
  bool weight_required = false;
};

// Reads a recipe; errors name the file, line and field.
Recipe read_recipe(const std::string& path);
Recipe parse_recipe(const std::string& text, const std::string& origin);
std::string recipe_yaml(const Recipe& recipe);

// The JobSpec a recipe describes (rules compiled, sizes parsed).
JobSpec job_spec(const Recipe& recipe);

// The jobs a recipe runs in one read pass: the recipe itself, or with
// variants the merge (into OUTPUT/w<w>/) and each variant (into
// OUTPUT/<name>/w<w>/), each a recipe of its own without variants.
std::vector<Recipe> recipe_jobs(const Recipe& recipe);

// Parses "0.25,0.5,1" into weights.
std::vector<double> parse_weight_list(const std::string& text);

// Parses NAME=VALUE (a number or a word, read_scalar_text) into `params`;
// usage error naming `spec` when it is malformed, refused or NAME is set already.
void add_param_assignment(ParamSettings& params, const std::string& spec);

}  // namespace rvec
