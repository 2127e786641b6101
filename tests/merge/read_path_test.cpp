// The path the merge executor's ReadAhead walks: every byte the element pass
// reads, in the order it reads them.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "hf/synthetic.hpp"
#include "merge/executor.hpp"
#include "merge/job.hpp"
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

  test::TempDir dir_;
  std::unique_ptr<test::OpenFamily> fam_;
  JobSpec spec_;
};

TEST_F(ReadPath, HoldsWhatThePlanCountsRowByRow) {
  const JobPlan plan = plan_job(fam_->inputs(), spec_);
  std::vector<TaskRow> rows;
  for (const TensorTask& t : plan.tasks) rows.push_back({&t});
  const std::vector<ReadStretch> path = read_path(rows);
  ASSERT_EQ(path.size(), 2 * rows.size());
  uint64_t total = 0;
  for (const ReadStretch& s : path) total += stretch_bytes(s);
  EXPECT_EQ(total, plan.bytes_to_read);  // task arithmetic: no statistics passes
  size_t copied = 0, extra_rows = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const TensorTask& task = *rows[i].front();
    const std::string target = fam_->target->find(task.name)->file->path() + ":" + task.name;
    if (task.copied()) {
      ++copied;
      EXPECT_EQ(path[2 * i].elements, 0u) << task.name;
      EXPECT_EQ(names(path[2 * i + 1]), std::vector<std::string>{target}) << task.name;
      EXPECT_EQ(path[2 * i + 1].first, 0u) << task.name;
      continue;
    }
    EXPECT_EQ(path[2 * i].tensors.size(), 3u) << task.name;  // target, post, pre
    EXPECT_EQ(names(path[2 * i]).front(), target) << task.name;
    EXPECT_EQ(path[2 * i].elements, task.combined_elements) << task.name;
    EXPECT_EQ(path[2 * i + 1].first, task.combined_elements) << task.name;
    EXPECT_EQ(path[2 * i + 1].elements, task.element_count() - task.combined_elements) << task.name;
    if (path[2 * i + 1].elements > 0) {
      ++extra_rows;
      EXPECT_EQ(names(path[2 * i + 1]), std::vector<std::string>{target}) << task.name;
    }
  }
  EXPECT_GT(copied, 0u);
  EXPECT_GT(extra_rows, 0u);
}

}  // namespace
}  // namespace rvec
