// The path the merge executor's ReadAhead walks: every byte the first
// statistics pass and the element pass read, in the order they read them.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "hf/synthetic.hpp"
#include "merge/executor.hpp"
#include "merge/job.hpp"
#include "merge/method.hpp"
#include "merge/open_family.hpp"
#include "merge/rules.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

uint64_t stretch_bytes(const ReadStretch& s) {
  uint64_t bytes = 0;
  for (const ModelTensor* t : s.tensors) bytes += dtype_bytes(t->info->dtype, s.elements);
  return bytes;
}

std::vector<std::string> names(const ReadStretch& s) {
  std::vector<std::string> out;
  for (const ModelTensor* t : s.tensors) out.push_back(t->file->path() + ":" + t->name());
  return out;
}

class ReadPath : public ::testing::Test {
 protected:
  void SetUp() override {
    FamilyOptions options;
    options.target_extra_rows = 3;  // embeddings combine the shared rows and copy the rest
    write_family(dir_.path(), options);
    fam_ = std::make_unique<test::OpenFamily>(dir_.path());
    spec_.weights = {0.5};
    spec_.output = dir_ / "out";
    spec_.rules = part_rules({"attention"}, false);  // attention tensors are copied from the target
  }

  // The rows of a plan with one group of `method`, and the path through them.
  std::vector<ReadStretch> path_of(const JobPlan& plan, std::string_view method) {
    rows_.clear();
    for (const TensorTask& t : plan.tasks) rows_.push_back({&t});
    params_ = plan.merge_params;
    const OutputGroup group{&merge_method(method), &params_, {0.5}, {0}};
    return read_path(rows_, std::span(&group, 1));
  }

  test::TempDir dir_;
  std::vector<TaskRow> rows_;
  MethodParams params_;
  std::unique_ptr<test::OpenFamily> fam_;
  JobSpec spec_;
};

TEST_F(ReadPath, HoldsWhatThePlanCountsRowByRow) {
  const JobPlan plan = plan_job(fam_->inputs(), spec_);
  const std::vector<ReadStretch> path = path_of(plan, "task_arithmetic");
  const std::vector<TaskRow>& rows = rows_;
  ASSERT_EQ(path.size(), 3 * rows.size());
  uint64_t total = 0;
  for (const ReadStretch& s : path) total += stretch_bytes(s);
  EXPECT_EQ(total, plan.bytes_to_read);  // task arithmetic: no statistics passes
  size_t copied = 0, extra_rows = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const TensorTask& task = *rows[i].front();
    const std::string target = fam_->target->find(task.name)->file->path() + ":" + task.name;
    EXPECT_TRUE(path[3 * i].tensors.empty()) << task.name;
    EXPECT_EQ(path[3 * i].elements, 0u) << task.name;
    if (task.copied()) {
      ++copied;
      EXPECT_EQ(path[3 * i + 1].elements, 0u) << task.name;
      EXPECT_EQ(names(path[3 * i + 2]), std::vector<std::string>{target}) << task.name;
      EXPECT_EQ(path[3 * i + 2].first, 0u) << task.name;
      continue;
    }
    EXPECT_EQ(path[3 * i + 1].tensors.size(), 3u) << task.name;  // target, post, pre
    EXPECT_EQ(names(path[3 * i + 1]).front(), target) << task.name;
    EXPECT_EQ(path[3 * i + 1].elements, task.combined_elements) << task.name;
    EXPECT_EQ(path[3 * i + 2].first, task.combined_elements) << task.name;
    EXPECT_EQ(path[3 * i + 2].elements, task.element_count() - task.combined_elements) << task.name;
    if (path[3 * i + 2].elements > 0) {
      ++extra_rows;
      EXPECT_EQ(names(path[3 * i + 2]), std::vector<std::string>{target}) << task.name;
    }
  }
  EXPECT_GT(copied, 0u);
  EXPECT_GT(extra_rows, 0u);
}

// A method with statistics passes: before each combined row's inputs, its
// vector (post, then pre) once more for the first pass; the plan counts the
// rare further passes too, the path does not.
TEST_F(ReadPath, ReadsTheVectorsOnceMoreForTheFirstStatisticsPass) {
  spec_.method = &merge_method("ties");
  const JobPlan plan = plan_job(fam_->inputs(), spec_);
  const std::vector<ReadStretch> path = path_of(plan, "ties");
  ASSERT_EQ(path.size(), 3 * rows_.size());
  uint64_t total = 0, vectors = 0, further = 0;
  for (size_t i = 0; i < rows_.size(); ++i) {
    const TensorTask& task = *rows_[i].front();
    for (size_t s = 0; s < 3; ++s) total += stretch_bytes(path[3 * i + s]);
    if (task.copied()) {
      EXPECT_TRUE(path[3 * i].tensors.empty()) << task.name;
      continue;
    }
    const TaskVector& v = task.vectors.front();
    const std::vector<std::string> pair{v.post->file->path() + ":" + v.post->name(),
                                        v.pre->file->path() + ":" + v.pre->name()};
    EXPECT_EQ(names(path[3 * i]), pair) << task.name;
    EXPECT_EQ(path[3 * i].elements, task.combined_elements) << task.name;
    vectors += stretch_bytes(path[3 * i]);
    further += (statistics_passes(merge_method("ties"), task, params_) - 1) * stretch_bytes(path[3 * i]);
  }
  EXPECT_GT(vectors, 0u);
  EXPECT_EQ(total + further, plan.bytes_to_read);
}

}  // namespace
}  // namespace rvec
