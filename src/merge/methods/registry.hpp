// The merge methods rvec knows. Adding one: a file in merge/methods/ that
// defines `const MergeMethod& NAME_method()`, its declaration here, and one
// line in registry.cpp.
#pragma once

#include "merge/method.hpp"

namespace rvec {

const MergeMethod& task_arithmetic_method();

}  // namespace rvec
