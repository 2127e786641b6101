// mergekit configs as rvec recipes, so that `rvec run mergekit.yaml -o OUT`
// does what mergekit would, with rvec's arithmetic (docs/merging.md lists
// every difference):
//
//   merge_method: ties            task_arithmetic, ties, dare_linear, dare_ties, breadcrumbs
//   base_model: path/to/base      pre and target of every vector
//   models:                       each model but the base: a vector model - base
//     - model: path/to/model
//       parameters: {weight: 1, density: [1, 0.7, 0.1]}
//   parameters: {normalize: true, int8_mask: true, lambda: 1}
//   dtype: float16                the output dtype unless out_dtype says otherwise
//
// mergekit's semantics are kept where rvec can say them: the sign vote over
// weighted entries (vote: weighted), rescale: true as rescale: l1, its
// parameter defaults (density 1, gamma 0.01), lambda as the output's w,
// gradients and filters. Anything else (slices, modules, tokenizer options,
// LoRA references, other methods, unknown parameters) is refused naming the
// field and line.
#pragma once

#include <string>

#include "merge/recipe.hpp"

namespace rvec {

// True if the YAML text is a mergekit config (it has a top-level merge_method).
bool is_mergekit_config(const std::string& text);

// The rvec recipe that does the merge the config describes, writing to `output`.
Recipe mergekit_recipe(const std::string& text, const std::string& origin, const std::string& output);

}  // namespace rvec
