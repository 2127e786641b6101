#include "io/staging.hpp"

#include <gtest/gtest.h>

#include "base/error.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

namespace fs = std::filesystem;

TEST(StagingDir, AssemblesOutOfSightAndRenamesOnCommit) {
  test::TempDir dir;
  const fs::path dest = dir / "out";
  {
    StagingDir staging(dest, false);
    EXPECT_EQ(staging.path(), dir / ".out.rvec-partial");
    staging.write_text("config.json", "{}");
    EXPECT_FALSE(fs::exists(dest));
    staging.commit();
  }
  EXPECT_EQ(test::read_file(dest / "config.json"), "{}");
  EXPECT_FALSE(fs::exists(dir / ".out.rvec-partial"));
}

TEST(StagingDir, AnAbandonedRunLeavesNothingAtTheDestination) {
  test::TempDir dir;
  {
    StagingDir staging(dir / "out", false);
    staging.write_text("model.safetensors", "half");
  }
  EXPECT_FALSE(fs::exists(dir / "out"));
  StagingDir again(dir / "out", false);  // a new run starts clean
  EXPECT_FALSE(fs::exists(again.file("model.safetensors")));
}

TEST(StagingDir, RefusesExistingDestinationUnlessOverwrite) {
  test::TempDir dir;
  fs::create_directories(dir / "out");
  test::write_file(dir / "out" / "old.txt", "old");
  try {
    StagingDir staging(dir / "out", false);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUsage);
    EXPECT_NE(std::string(e.what()).find("already exists"), std::string::npos);
  }
  StagingDir staging(dir / "out", true);
  staging.write_text("new.txt", "new");
  staging.commit();
  EXPECT_TRUE(fs::exists(dir / "out" / "new.txt"));
  EXPECT_FALSE(fs::exists(dir / "out" / "old.txt"));
}

TEST(StagingDir, HandlesTrailingSlashes) {
  test::TempDir dir;
  StagingDir staging((dir / "out").string() + "/", false);
  EXPECT_EQ(staging.path(), dir / ".out.rvec-partial");
  staging.commit();
  EXPECT_TRUE(fs::is_directory(dir / "out"));
}

}  // namespace
}  // namespace rvec
