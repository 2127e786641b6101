// Integration tests: drive the real rvec binary on real files.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "hf/synthetic.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

namespace fs = std::filesystem;
using test::run_rvec;

class Cli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    const auto r = run_rvec("gen-family " + (dir_->path() / "fam").string() + " --max-shard-size 100kB -q");
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string fam(const std::string& member) { return (dir_->path() / "fam" / member).string(); }
  static test::TempDir* dir_;
};
test::TempDir* Cli::dir_ = nullptr;

TEST_F(Cli, HelpTeachesAndVersionAnswers) {
  const auto help = run_rvec("--help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("inspect"), std::string::npos);
  EXPECT_NE(help.output.find("check"), std::string::npos);
  const auto check_help = run_rvec("check --help");
  EXPECT_NE(check_help.output.find("Exit codes"), std::string::npos);
  EXPECT_EQ(run_rvec("--version").exit_code, 0);
}

TEST_F(Cli, BadFlagsAreUsageErrors) {
  const auto r = run_rvec("inspect --no-such-flag x");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(r.output.rfind("rvec: error: ", 0), 0u) << r.output;
  EXPECT_EQ(run_rvec("").exit_code, 2);
  EXPECT_EQ(run_rvec("gen-family /tmp/x --shape 9000b").exit_code, 2);
}

TEST_F(Cli, InspectJsonDescribesTheModel) {
  const auto r = run_rvec("inspect --json --tensors " + fam("target"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["layout"], "sharded");
  EXPECT_EQ(j["config"]["architecture"], "Qwen2ForCausalLM");
  EXPECT_EQ(j["parameters"], 158272);
  EXPECT_EQ(j["dtypes"]["BF16"]["tensors"], 27);
  EXPECT_EQ(j["tied_embeddings"], false);
  EXPECT_EQ(j["embedding_rows"], 512);
  EXPECT_EQ(j["tokenizer_size"], 500);
  EXPECT_EQ(j["tensors"].size(), 27u);
  EXPECT_EQ(j["shards"][0]["metadata"]["format"], "pt");
}

TEST_F(Cli, InspectHumanOutputFitsATerminal) {
  const auto r = run_rvec("inspect " + fam("pre"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("params    158,272"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("12 rows past the tokenizer"), std::string::npos) << r.output;
}

TEST_F(Cli, CheckCompatibleFamilyExitsZero) {
  const auto r = run_rvec("check " + fam("pre") + " " + fam("post") + " " + fam("target") + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["compatible"], true);
  EXPECT_EQ(j["plan"]["combined"], 27);
  EXPECT_GT(j["disk"]["free_bytes"].get<uint64_t>(), 0u);
}

TEST_F(Cli, CheckIncompatibleExitsThreeNamingTheProblem) {
  test::TempDir other;
  ASSERT_EQ(run_rvec("gen-family " + other.path().string() + " --shape 0.5b --sparse -q").exit_code, 0);
  const auto r = run_rvec("check " + fam("pre") + " " + (other / "post").string() + " " + fam("target"));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("field \"hidden_size\" differs"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("verdict incompatible"), std::string::npos) << r.output;
}

TEST_F(Cli, CheckUnreadableInputExitsFourWithOneLine) {
  test::TempDir broken;
  fs::create_directories(broken / "m");
  test::write_file(broken / "m" / "model.safetensors", "not a checkpoint at all");
  const auto r = run_rvec("check " + fam("pre") + " " + (broken / "m").string() + " " + fam("target"));
  EXPECT_EQ(r.exit_code, 4) << r.output;
  EXPECT_EQ(r.output.rfind("rvec: error: ", 0), 0u) << r.output;
  EXPECT_NE(r.output.find("model.safetensors: not a safetensors file"), std::string::npos) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
}

TEST_F(Cli, GenFamilyRefusesToOverwrite) {
  const auto r = run_rvec("gen-family " + (dir_->path() / "fam").string() + " -q");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("already exists"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace rvec

namespace rvec {
namespace {

std::string fam_args(const fs::path& fam) {
  return "--pre " + (fam / "pre").string() + " --post " + (fam / "post").string() + " --target " +
         (fam / "target").string();
}

TEST(CliMerge, KilledRunLeavesNothingFinishedAndResumesToIdenticalBytes) {
  test::TempDir dir;
  ASSERT_EQ(run_rvec("gen-family " + (dir / "fam").string() + " -q").exit_code, 0);
  const std::string common = "merge " + fam_args(dir / "fam") + " -w 0.5,1 --max-shard-size 60kB -q -o ";
  ASSERT_EQ(run_rvec(common + (dir / "clean").string()).exit_code, 0);

  const auto killed = test::run_shell("env RVEC_TEST_KILL_AFTER_SHARDS=2 " + std::string(RVEC_CLI_PATH) + " " + common +
                               (dir / "out").string() + "; echo exit=$?");
  EXPECT_NE(killed.output.find("exit=137"), std::string::npos) << killed.output;  // SIGKILL
  EXPECT_FALSE(fs::exists(dir / "out" / "w0.5"));
  EXPECT_TRUE(fs::exists(dir / "out" / ".w0.5.rvec-partial"));

  const auto resumed = run_rvec(common.substr(0, common.size() - 6) + " --json -o " + (dir / "out").string());
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  const auto j = nlohmann::json::parse(resumed.output);
  EXPECT_EQ(j["outputs"][0]["shards_reused"], 2) << resumed.output;
  EXPECT_FALSE(fs::exists(dir / "out" / ".w0.5.rvec-partial"));
  for (const char* w : {"w0.5", "w1"}) {
    for (const auto& entry : fs::directory_iterator(dir / "clean" / w)) {
      if (entry.path().extension() != ".safetensors") continue;
      EXPECT_EQ(test::read_file(entry.path()), test::read_file(dir / "out" / w / entry.path().filename()))
          << w << " " << entry.path().filename();
    }
  }
}

TEST(CliMerge, StatsSayWhereTheTimeWent) {
  test::TempDir dir;
  ASSERT_EQ(run_rvec("gen-family " + (dir / "fam").string() + " -q").exit_code, 0);
  const auto text = run_rvec("merge " + fam_args(dir / "fam") + " -w 0.5 --stats -o " + (dir / "a").string());
  ASSERT_EQ(text.exit_code, 0) << text.output;
  EXPECT_NE(text.output.find("stages  read "), std::string::npos) << text.output;
  const auto json = run_rvec("merge " + fam_args(dir / "fam") + " -w 0.5 --json -o " + (dir / "b").string());
  ASSERT_EQ(json.exit_code, 0) << json.output;
  const auto j = nlohmann::json::parse(json.output);
  const auto& stages = j["stages"];
  for (const char* key : {"read_s", "compute_s", "write_wait_s", "write_s", "sync_s"}) {
    EXPECT_GE(stages[key].get<double>(), 0.0) << key;
  }
  EXPECT_GT(stages["bytes_appended"].get<uint64_t>(), 0u);
  EXPECT_LE(stages["bytes_appended"].get<uint64_t>(), j["bytes_written"].get<uint64_t>());
}

TEST(CliMerge, DryRunWritesNothingAndShowsRules) {
  test::TempDir dir;
  ASSERT_EQ(run_rvec("gen-family " + (dir / "fam").string() + " -q").exit_code, 0);
  const auto r = run_rvec("merge " + fam_args(dir / "fam") + " -w 0.5 -o " + (dir / "out").string() +
                          " --skip norm --dry-run");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("copied from target (match 'norm' scale 0)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("disk "), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "out"));
}

TEST(CliMerge, RecipeSavedInTheOutputRedoesTheJob) {
  test::TempDir dir;
  ASSERT_EQ(run_rvec("gen-family " + (dir / "fam").string() + " -q").exit_code, 0);
  ASSERT_EQ(run_rvec("merge " + fam_args(dir / "fam") + " -w 0.75 -q -o " + (dir / "a").string()).exit_code, 0);
  std::string recipe = test::read_file(dir / "a" / "rvec_recipe.yaml");
  const auto pos = recipe.find("output: ");
  recipe = recipe.substr(0, pos) + "output: " + (dir / "b").string() + "\n" +
           recipe.substr(recipe.find('\n', pos) + 1);
  test::write_file(dir / "r.yaml", recipe);
  const auto r = run_rvec("run -q " + (dir / "r.yaml").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(test::read_file(dir / "a" / "model.safetensors"), test::read_file(dir / "b" / "model.safetensors"));
}

TEST(CliMerge, ApplyRefusesSomethingThatIsNotAVector) {
  test::TempDir dir;
  ASSERT_EQ(run_rvec("gen-family " + (dir / "fam").string() + " -q").exit_code, 0);
  const auto r = run_rvec("apply --target " + (dir / "fam" / "target").string() + " --vector " +
                          (dir / "fam" / "post").string() + " -w 1 -o " + (dir / "out").string());
  EXPECT_EQ(r.exit_code, 4) << r.output;
  EXPECT_NE(r.output.find("not a vector written by `rvec extract`"), std::string::npos) << r.output;
}

TEST(CliMerge, IncompatibleMergeExitsThree) {
  test::TempDir dir;
  ASSERT_EQ(run_rvec("gen-family " + (dir / "fam").string() + " -q").exit_code, 0);
  ASSERT_EQ(run_rvec("gen-family " + (dir / "big").string() + " --shape 0.5b --sparse -q").exit_code, 0);
  const auto r = run_rvec("merge --pre " + (dir / "fam" / "pre").string() + " --post " + (dir / "big" / "post").string() +
                          " --target " + (dir / "fam" / "target").string() + " -w 1 -o " + (dir / "out").string());
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_FALSE(fs::exists(dir / "out"));
}

}  // namespace
}  // namespace rvec

namespace rvec {
namespace {

// A tiny tmpfs, when this process may mount one (root in CI); else the test skips.
class SmallDisk {
 public:
  explicit SmallDisk(const fs::path& where, const char* size) : path_(where) {
    fs::create_directories(path_);
    mounted_ = test::run_shell("mount -t tmpfs -o size=" + std::string(size) + " tmpfs " + path_.string()).exit_code == 0;
  }
  ~SmallDisk() {
    if (mounted_) test::run_shell("umount " + path_.string());
  }
  bool mounted() const { return mounted_; }

 private:
  fs::path path_;
  bool mounted_ = false;
};

TEST(CliMerge, RefusesUpFrontWhenTheDiskIsTooSmall) {
  test::TempDir dir;
  SmallDisk disk(dir / "small", "200k");
  if (!disk.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";
  ASSERT_EQ(run_rvec("gen-family " + (dir / "fam").string() + " -q").exit_code, 0);
  const auto r = run_rvec("merge " + fam_args(dir / "fam") + " -w 0.5,1 -o " + (dir / "small" / "out").string());
  EXPECT_EQ(r.exit_code, 5) << r.output;
  EXPECT_NE(r.output.find("not enough disk space"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "small" / "out"));
}

TEST(CliMerge, DiskFullWhileWritingIsAClearErrorAndLeavesNoOutput) {
  test::TempDir dir;
  SmallDisk disk(dir / "small", "400k");
  if (!disk.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";
  ASSERT_EQ(run_rvec("gen-family " + (dir / "fam").string() + " -q").exit_code, 0);
  // One output fits the free-space check; filling the disk behind rvec's back makes the write fail.
  const auto r = test::run_shell("head -c 300000 /dev/urandom > " + (dir / "small" / "filler").string() + " & " +
                                 std::string(RVEC_CLI_PATH) + " merge " + fam_args(dir / "fam") + " -w 0.5 -q -o " +
                                 (dir / "small" / "out").string() + "; echo exit=$?");
  if (r.output.find("exit=0") != std::string::npos) GTEST_SKIP() << "the filler lost the race; nothing to check";
  EXPECT_TRUE(r.output.find("exit=5") != std::string::npos) << r.output;
  EXPECT_TRUE(r.output.find("No space left on device") != std::string::npos ||
              r.output.find("not enough disk space") != std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(dir / "small" / "out"));
}

}  // namespace
}  // namespace rvec

namespace rvec {
namespace {

TEST(CliCheckDeep, UnrelatedPostExitsThreeAndTheRightParentIsSuggested) {
  test::TempDir dir;
  ASSERT_EQ(run_rvec("gen-family " + (dir / "ok").string() + " -q").exit_code, 0);
  ASSERT_EQ(run_rvec("gen-family " + (dir / "bad").string() + " -q --unrelated-post --seed 1").exit_code, 0);
  const auto good = run_rvec("check --deep " + (dir / "ok" / "pre").string() + " " + (dir / "ok" / "post").string() +
                             " " + (dir / "ok" / "target").string());
  EXPECT_EQ(good.exit_code, 0) << good.output;
  EXPECT_NE(good.output.find("post looks like a fine-tune of pre"), std::string::npos) << good.output;

  // bad/post came from another random parent: its vector would be noise.
  const auto bad = run_rvec("check --deep --json " + (dir / "bad" / "pre").string() + " " +
                            (dir / "bad" / "post").string() + " " + (dir / "bad" / "target").string());
  EXPECT_EQ(bad.exit_code, 3) << bad.output;
  const auto j = nlohmann::json::parse(bad.output);
  EXPECT_EQ(j["lineage"]["post_verdict"], "unrelated");
  EXPECT_EQ(j["lineage"]["target_verdict"], "fine-tune");

  // Wrong pre for ok/post: the candidate list finds the right parent.
  test::TempDir other;
  ASSERT_EQ(run_rvec("gen-family " + other.path().string() + " -q --seed 7").exit_code, 0);
  const auto ranked = run_rvec("check --deep " + (other / "pre").string() + " " + (dir / "ok" / "post").string() + " " +
                               (other / "target").string() + " --candidates " + (other / "target").string() + " " +
                               (dir / "ok" / "pre").string());
  EXPECT_EQ(ranked.exit_code, 3) << ranked.output;
  EXPECT_NE(ranked.output.find("parent  #1 " + (dir / "ok" / "pre").string()), std::string::npos) << ranked.output;
  EXPECT_NE(ranked.output.find("suggest " + (dir / "ok" / "pre").string()), std::string::npos) << ranked.output;
}

}  // namespace
}  // namespace rvec

namespace rvec {
namespace {

TEST(CliStats, PrintsJsonAndWritesAPlot) {
  test::TempDir dir;
  ASSERT_EQ(run_rvec("gen-family " + (dir / "f").string() + " -q").exit_code, 0);
  const auto r = run_rvec("stats --pre " + (dir / "f" / "pre").string() + " --post " + (dir / "f" / "post").string() +
                          " --json --plot " + (dir / "layers.svg").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_GT(j["total"]["norm"].get<double>(), 0);
  EXPECT_EQ(j["by_layer"].size(), 2u);
  EXPECT_TRUE(fs::exists(dir / "layers.svg"));
  EXPECT_EQ(run_rvec("stats").exit_code, 2);
  EXPECT_EQ(run_rvec("stats " + (dir / "f" / "pre").string() + " --pre x --post y").exit_code, 2);
}

}  // namespace
}  // namespace rvec
