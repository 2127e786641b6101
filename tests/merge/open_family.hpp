// A generated pre/post/target family opened for merge tests.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "hf/model_folder.hpp"
#include "merge/job.hpp"
#include "merge/plan.hpp"

namespace rvec::test {

struct OpenFamily {
  std::unique_ptr<ModelFolder> pre, post, target;

  // Opens DIR/pre, DIR/post and DIR/target.
  explicit OpenFamily(const std::filesystem::path& dir)
      : pre(ModelFolder::open((dir / "pre").string())),
        post(ModelFolder::open((dir / "post").string())),
        target(ModelFolder::open((dir / "target").string())) {}

  JobInputs inputs() const { return {{{pre.get(), post.get()}}, target.get()}; }
  MergePlan plan() const { return plan_merge({pre.get(), *post, *target}); }
};

// The stored bytes of tensor `name` (empty, with a test failure, if absent).
inline std::vector<std::byte> tensor_bytes(const ModelFolder& model, const std::string& name) {
  const ModelTensor* t = model.find(name);
  if (!t) {
    ADD_FAILURE() << model.path() << " has no tensor " << name;
    return {};
  }
  const auto span = t->file->map(*t->info);
  return {span.begin(), span.end()};
}

}  // namespace rvec::test
