// Integration tests: drive the real rvec binary on real files.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "model/synthetic.hpp"
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
