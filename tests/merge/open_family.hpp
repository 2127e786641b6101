// A generated pre/post/target family opened for merge tests.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <filesystem>
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "hf/model_folder.hpp"
#include "merge/job.hpp"
#include "merge/plan.hpp"
#include "test_util.hpp"

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

// The .safetensors files of a model folder, sorted by name.
inline std::vector<std::filesystem::path> shards_of(const std::filesystem::path& model) {
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(model)) {
    if (e.path().extension() == ".safetensors") files.push_back(e.path().filename());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Same tensors with the same bytes; the headers may differ (they record how
// each output was asked for).
inline void expect_same_tensors(const std::filesystem::path& a, const std::filesystem::path& b) {
  const auto x = ModelFolder::open(a.string()), y = ModelFolder::open(b.string());
  ASSERT_EQ(x->tensors().size(), y->tensors().size());
  for (const auto& t : x->tensors()) {
    const ModelTensor* other = y->find(t.name());
    ASSERT_NE(other, nullptr) << t.name();
    const auto p = t.file->map(*t.info), q = other->file->map(*other->info);
    EXPECT_TRUE(std::equal(p.begin(), p.end(), q.begin(), q.end())) << t.name() << " differs between " << a << " and " << b;
  }
}

// Two model folders hold the same shard files with the same bytes.
inline void expect_same_shards(const std::filesystem::path& a, const std::filesystem::path& b) {
  const auto files = shards_of(a);
  ASSERT_FALSE(files.empty()) << a;
  ASSERT_EQ(files, shards_of(b));
  for (const auto& f : files) EXPECT_TRUE(read_file(a / f) == read_file(b / f)) << a / f << " vs " << b / f;
}

}  // namespace rvec::test
