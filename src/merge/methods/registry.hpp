// The merge methods rvec knows. Adding one: a file in merge/methods/ that
// defines `const MergeMethod& NAME_method()`, its declaration here, and one
// line in registry.cpp.
#pragma once

#include "merge/method.hpp"

namespace rvec {

const MergeMethod& task_arithmetic_method();
const MergeMethod& magnitude_method();
const MergeMethod& ties_method();
const MergeMethod& dare_linear_method();
const MergeMethod& dare_ties_method();
const MergeMethod& breadcrumbs_method();
const MergeMethod& random_method();
const MergeMethod& norm_matched_method();

}  // namespace rvec
