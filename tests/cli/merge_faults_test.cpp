// The merge under faults, through the real CLI: killed after, inside and
// while finishing every file, inputs changed between runs, outputs that would
// overwrite inputs, weights that overflow, partial folders left on a nearly
// full disk. In every case the inputs stay byte for byte as they were.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <nlohmann/json.hpp>

#include "merge/open_family.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

namespace fs = std::filesystem;
using test::run_rvec;

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

std::string fam_args(const fs::path& fam) {
  return "--pre " + q(fam / "pre") + " --post " + q(fam / "post") + " --target " + q(fam / "target");
}

// Every file below `dir` with its bytes, to show an input was left alone.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) files[fs::relative(e.path(), dir).string()] = test::read_file(e.path());
  }
  return files;
}

// Takes the exclusive flock a running rvec holds on `lock_file` (made if need
// be): the descriptor, or -1 when the lock cannot be had.
int hold_lock(const fs::path& lock_file) {
  const int fd = ::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd >= 0 && ::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

using test::expect_same_shards;
using test::shards_of;

// Rewrites one byte near the end of the file in place: same size, same header.
void flip_last_data_byte(const fs::path& file) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(-1, std::ios::end);
  char c = 0;
  f.get(c);
  f.seekp(-1, std::ios::end);
  f.put(static_cast<char>(c ^ 0x01));
}

class MergeFaults : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(run_rvec("gen-family " + q(dir_ / "fam") + " --max-shard-size 60kB -q").exit_code, 0);
    inputs_ = snapshot(dir_ / "fam");
  }
  void TearDown() override { EXPECT_EQ(snapshot(dir_ / "fam"), inputs_) << "an input changed"; }

  std::string merge(const fs::path& out, const std::string& extra = "") const {
    return "merge " + fam_args(dir_ / "fam") + " -w 0.5,1 --max-shard-size 60kB -q -o " + q(out) + " " + extra;
  }

  test::TempDir dir_;
  std::map<std::string, std::string> inputs_;
};

TEST_F(MergeFaults, KilledAfterEveryFileResumesToTheSameBytes) {
  ASSERT_EQ(run_rvec(merge(dir_ / "clean")).exit_code, 0);
  const size_t files = shards_of(dir_ / "clean" / "w0.5").size();
  ASSERT_GE(files, 3u);
  for (size_t n = 1; n <= files; ++n) {
    const fs::path out = dir_ / ("killed" + std::to_string(n));
    const auto killed = test::run_shell("env RVEC_TEST_KILL_AFTER_SHARDS=" + std::to_string(n) + " " + RVEC_CLI_PATH +
                                        " " + merge(out) + "; echo exit=$?");
    EXPECT_NE(killed.output.find("exit=137"), std::string::npos) << n << ": " << killed.output;
    EXPECT_FALSE(fs::exists(out / "w0.5")) << n;
    const auto resumed = run_rvec(merge(out));
    ASSERT_EQ(resumed.exit_code, 0) << n << ": " << resumed.output;
    for (const char* w : {"w0.5", "w1"}) expect_same_shards(dir_ / "clean" / w, out / w);
  }
}

using test::file_names;

// Killed halfway through every file, and at every step of finishing the
// outputs (model card, provenance, markers removed just before the rename).
TEST_F(MergeFaults, KilledInsideEveryFileAndWhileFinishingResumesToTheSameBytes) {
  ASSERT_EQ(run_rvec(merge(dir_ / "clean")).exit_code, 0);
  const size_t files = shards_of(dir_ / "clean" / "w0.5").size();
  std::vector<std::string> kills;
  for (size_t n = 1; n <= files; ++n) kills.push_back("RVEC_TEST_KILL_IN_FILE=" + std::to_string(n));
  for (int n = 1; n <= 6; ++n) kills.push_back("RVEC_TEST_KILL_WHILE_FINISHING=" + std::to_string(n));  // 2 outputs x 3
  for (size_t k = 0; k < kills.size(); ++k) {
    const fs::path out = dir_ / ("killed" + std::to_string(k));
    const auto killed = test::run_shell("env " + kills[k] + " " + RVEC_CLI_PATH + " " + merge(out) + "; echo exit=$?");
    EXPECT_NE(killed.output.find("exit=137"), std::string::npos) << kills[k] << ": " << killed.output;
    const auto resumed = run_rvec(merge(out));
    ASSERT_EQ(resumed.exit_code, 0) << kills[k] << ": " << resumed.output;
    for (const char* w : {"w0.5", "w1"}) {
      expect_same_shards(dir_ / "clean" / w, out / w);
      EXPECT_EQ(file_names(out / w), file_names(dir_ / "clean" / w)) << kills[k];
    }
    EXPECT_EQ(file_names(out), file_names(dir_ / "clean")) << kills[k];  // no partial folder left
  }
}

// Every method through the CLI: two threads write the same bytes as one, and
// a run killed after its first or second file resumes to them too (the
// statistics passes and DARE's decisions start afresh per tensor).
TEST_F(MergeFaults, EveryMethodResumesAfterAKillAndIgnoresTheThreadCount) {
  const std::pair<const char*, const char*> methods[] = {
      {"magnitude", "--density 0.3"},      {"ties", "--density 0.2"}, {"dare_linear", "--density 0.3 --seed 5"},
      {"dare_ties", "--density 0.4 --param rescale=l1"}, {"breadcrumbs", "--density 0.5 --gamma 0.05"}};
  for (const auto& [method, params] : methods) {
    const std::string args = std::string("--method ") + method + " " + params;
    const fs::path clean = dir_ / method / "clean";
    ASSERT_EQ(run_rvec(merge(clean, args + " --threads 1")).exit_code, 0) << method;
    ASSERT_EQ(run_rvec(merge(dir_ / method / "threads", args + " --threads 2")).exit_code, 0) << method;
    for (const char* w : {"w0.5", "w1"}) expect_same_shards(clean / w, dir_ / method / "threads" / w);
    for (const int n : {1, 2}) {
      const fs::path out = dir_ / method / ("killed" + std::to_string(n));
      const auto killed = test::run_shell("env RVEC_TEST_KILL_AFTER_SHARDS=" + std::to_string(n) + " " +
                                          RVEC_CLI_PATH + " " + merge(out, args) + "; echo exit=$?");
      EXPECT_NE(killed.output.find("exit=137"), std::string::npos) << method << n << ": " << killed.output;
      const auto resumed = run_rvec(merge(out, args + " --json"));
      ASSERT_EQ(resumed.exit_code, 0) << method << n << ": " << resumed.output;
      EXPECT_GE(nlohmann::json::parse(resumed.output)["outputs"][0]["shards_reused"], 1) << resumed.output;
      for (const char* w : {"w0.5", "w1"}) expect_same_shards(clean / w, out / w);
    }
    const auto provenance = nlohmann::json::parse(test::read_file(clean / "w1" / "rvec_provenance.json"));
    EXPECT_EQ(provenance["method"]["name"], method);
    // One file per output: the spare threads run the statistics passes of later tensors ahead.
    for (const char* threads : {"1", "3"}) {
      const fs::path out = dir_ / method / (std::string("one-file-") + threads);
      const auto r = run_rvec("merge " + fam_args(dir_ / "fam") + " -w 0.5,1 -q --max-shard-size 5GB -o " + q(out) + " " +
                              args + " --threads " + threads);
      ASSERT_EQ(r.exit_code, 0) << r.output;
    }
    for (const char* w : {"w0.5", "w1"}) expect_same_shards(dir_ / method / "one-file-1" / w, dir_ / method / "one-file-3" / w);
  }
}

// A recipe's merge and variants share each file's pass: killed after any
// file, the run resumes every output to the bytes of an uninterrupted run.
TEST_F(MergeFaults, VariantsKilledAfterEveryFileResumeToTheSameBytes) {
  const auto recipe = [&](const fs::path& out) {
    const fs::path file = out.string() + ".yaml";
    test::write_file(file, "pre: " + (dir_ / "fam" / "pre").string() + "\npost: " + (dir_ / "fam" / "post").string() +
                               "\ntarget: " + (dir_ / "fam" / "target").string() + "\nweights: [0.5, 1]\noutput: " +
                               out.string() + "\nmax_shard_size: 60kB\nvariants:\n"
                               "  - {name: ties, method: ties, params: {density: 0.3}, weights: [1]}\n"
                               "  - {name: dare, method: dare_ties, params: {density: 0.5, seed: 3}}\n");
    return "run -q --threads 2 " + q(file);
  };
  ASSERT_EQ(run_rvec(recipe(dir_ / "clean")).exit_code, 0);
  const std::vector<fs::path> outputs = {"w0.5", "w1", "ties/w1", "dare/w0.5", "dare/w1"};
  const size_t files = shards_of(dir_ / "clean" / "w1").size();
  ASSERT_GE(files, 3u);
  for (size_t n = 1; n < files; ++n) {
    const fs::path out = dir_ / ("killed" + std::to_string(n));
    const auto killed = test::run_shell("env RVEC_TEST_KILL_AFTER_SHARDS=" + std::to_string(n) + " " + RVEC_CLI_PATH +
                                        " " + recipe(out) + "; echo exit=$?");
    EXPECT_NE(killed.output.find("exit=137"), std::string::npos) << n << ": " << killed.output;
    for (const auto& o : outputs) EXPECT_FALSE(fs::exists(out / o)) << n << " " << o;
    const auto resumed = run_rvec(recipe(out));
    ASSERT_EQ(resumed.exit_code, 0) << n << ": " << resumed.output;
    for (const auto& o : outputs) expect_same_shards(dir_ / "clean" / o, out / o);
  }
}

TEST_F(MergeFaults, AnOutputThatIsHoldsOrSitsInAnInputIsRefused) {
  const fs::path fam = dir_ / "fam";
  for (const auto& [out, how] : {std::pair{fam / "target", "is the input target"},
                                 std::pair{fam / "post" / "sub", "is inside the input post"},
                                 std::pair{fam, "contains the input pre"},
                                 std::pair{fam / "pre" / ".." / "target" / "", "is the input target"}}) {
    const auto r = run_rvec("merge " + fam_args(fam) + " -w 1 --overwrite -q -o " + q(out));
    EXPECT_EQ(r.exit_code, 2) << out << ": " << r.output;
    EXPECT_NE(r.output.find(how), std::string::npos) << out << ": " << r.output;
  }
  const auto empty = run_rvec("merge " + fam_args(fam) + " -w 1 -q -o ''");
  EXPECT_EQ(empty.exit_code, 2) << empty.output;
  EXPECT_NE(empty.output.find("the output path is empty"), std::string::npos) << empty.output;
}

// A path that is not UTF-8 once ended the run with "internal error: [json.exception.type_error.316]
// invalid UTF-8 byte", for an output only after the whole merge had run.
TEST_F(MergeFaults, AnArgumentThatIsNotUtf8IsRefusedBeforeAnyWork) {
  const fs::path fam = dir_ / "fam";
  const auto out = run_rvec(merge(dir_ / "out\xff"));
  EXPECT_EQ(out.exit_code, 2) << out.output;
  EXPECT_NE(out.output.find("(\"" + (dir_ / "out").string() + "\\xff\") is not valid UTF-8 at byte"), std::string::npos)
      << out.output;
  fs::create_directory_symlink(fam / "post", dir_ / "p\xffq");
  const auto check = run_rvec("check " + q(fam / "pre") + " " + q(dir_ / "p\xffq") + " " + q(fam / "target") + " --json");
  EXPECT_EQ(check.exit_code, 2) << check.output;
  EXPECT_EQ(check.output.find("internal error"), std::string::npos) << check.output;
  EXPECT_EQ(file_names(dir_.path()), (std::set<std::string>{"fam", "p\xffq"}));
}

// An empty --post crashed (SIGSEGV) and an empty --pre made post a saved
// vector, so the merge added all of post to the target.
TEST_F(MergeFaults, AnEmptyModelPathIsRefused) {
  const fs::path fam = dir_ / "fam";
  const std::string out = " -w 1 -q -o " + q(dir_ / "out");
  const std::pair<std::string, std::string> cases[] = {
      {"merge --pre '' --post " + q(fam / "post") + " --target " + q(fam / "target") + out, "the path of pre is empty"},
      {"merge --pre " + q(fam / "pre") + " --post '' --target " + q(fam / "target") + out, "the path of post is empty"},
      {"merge --pre " + q(fam / "pre") + " --post " + q(fam / "post") + " --target ''" + out, "the path of target is empty"},
      {"extract --pre " + q(fam / "pre") + " --post '' -q -o " + q(dir_ / "out"), "the path of post is empty"},
      {"apply --vector '' --target " + q(fam / "target") + out, "the path of the vector is empty"},
      {"check '' " + q(fam / "post") + " " + q(fam / "target"), "a model's path is empty"},
  };
  for (const auto& [args, message] : cases) {
    const auto r = run_rvec(args);
    EXPECT_NE(r.exit_code, 0) << args;
    EXPECT_LT(r.exit_code, 128) << args;
    EXPECT_NE(r.output.find(message), std::string::npos) << args << "\n" << r.output;
  }
  EXPECT_FALSE(fs::exists(dir_ / "out"));
}

// Two runs writing one output mixed their shards and markers, and the
// mixture was then reported complete. The second run is now refused.
TEST_F(MergeFaults, ASecondRunWritingTheSameOutputIsRefused) {
  const fs::path out = dir_ / "out";
  fs::create_directories(out);
  const int held = hold_lock(out / ".w1.rvec-lock");  // what a first run holds for out/w1
  ASSERT_GE(held, 0);
  const auto refused = run_rvec(merge(out));
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_NE(refused.output.find((out / "w1").string() + ": another rvec run is writing this output (it holds .w1.rvec-lock)"),
            std::string::npos)
      << refused.output;
  EXPECT_FALSE(fs::exists(out / ".w0.5.rvec-partial")) << "nothing is started while an output is held";
  EXPECT_FALSE(fs::exists(out / ".w0.5.rvec-lock"));
  ::close(held);
  const auto after = run_rvec(merge(out));
  EXPECT_EQ(after.exit_code, 0) << after.output;
  EXPECT_EQ(file_names(out), (std::set<std::string>{"w0.5", "w1"})) << "the lock files go with their run";
}

// A run refused while taking its output locks (another run holds one; or,
// with hundreds of weights, no file descriptor is left) left behind, empty,
// a folder it had made for the first of its lock files: that lock went first,
// while the next one's file was still in the folder.
TEST_F(MergeFaults, ARunRefusedWhileTakingItsLocksLeavesNoFolderBehind) {
  const fs::path out = dir_ / "variants", file = dir_ / "variants.yaml";
  test::write_file(file, "pre: " + (dir_ / "fam" / "pre").string() + "\npost: " + (dir_ / "fam" / "post").string() +
                             "\ntarget: " + (dir_ / "fam" / "target").string() + "\nweights: [0.5, 1]\noutput: " +
                             out.string() + "\nvariants:\n  - {name: a}\n  - {name: b}\n");
  fs::create_directories(out / "b");
  const int held = hold_lock(out / "b" / ".w1.rvec-lock");  // what another run holds for variants/b/w1
  ASSERT_GE(held, 0);
  const auto refused = run_rvec("run -q " + q(file));
  ::close(held);
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_NE(refused.output.find("another rvec run is writing this output"), std::string::npos) << refused.output;
  EXPECT_FALSE(fs::exists(out / "a")) << "the folder made for variant a's lock files goes with them";
  EXPECT_EQ(file_names(out), (std::set<std::string>{"b"}));
}

TEST_F(MergeFaults, AnUnreadableInputIsASystemErrorNamingIt) {
  // As root every file is readable: run the CLI as nobody then.
  std::string as_user;
  if (::geteuid() == 0) {
    if (test::run_shell("command -v setpriv").exit_code != 0) GTEST_SKIP() << "needs setpriv to drop root";
    as_user = "setpriv --reuid=65534 --regid=65534 --clear-groups ";
  }
  const fs::path out_dir = dir_ / "open";
  fs::create_directories(out_dir);
  fs::permissions(out_dir, fs::perms::all);
  fs::permissions(dir_ / "fam" / "post", fs::perms::none);
  const auto r = test::run_shell(as_user + RVEC_CLI_PATH + " " + merge(out_dir / "out"));
  fs::permissions(dir_ / "fam" / "post", fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                             fs::perms::others_read | fs::perms::others_exec);
  EXPECT_EQ(r.exit_code, 5) << r.output;
  EXPECT_NE(r.output.find("post: Permission denied"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("internal error"), std::string::npos) << r.output;
}

// The inputs are known by path, size, modification time and header hash of
// every shard: data rewritten under the same header is noticed on the next run.
TEST_F(MergeFaults, AnInputChangedSinceTheRunIsNotMixedIn) {
  ASSERT_EQ(run_rvec(merge(dir_ / "out")).exit_code, 0);
  const auto killed = test::run_shell("env RVEC_TEST_KILL_AFTER_SHARDS=2 " + std::string(RVEC_CLI_PATH) + " " +
                                      merge(dir_ / "partial") + "; echo exit=$?");
  EXPECT_NE(killed.output.find("exit=137"), std::string::npos) << killed.output;

  const fs::path changed = dir_ / "fam" / "post" / shards_of(dir_ / "fam" / "post").back();
  flip_last_data_byte(changed);
  inputs_ = snapshot(dir_ / "fam");

  const auto again = run_rvec(merge(dir_ / "out"));
  EXPECT_EQ(again.exit_code, 2) << again.output;
  EXPECT_NE(again.output.find("was not made by this job"), std::string::npos) << again.output;

  const auto resumed = run_rvec(merge(dir_ / "partial", "--json"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(nlohmann::json::parse(resumed.output)["outputs"][0]["shards_reused"], 0) << resumed.output;
  ASSERT_EQ(run_rvec(merge(dir_ / "fresh")).exit_code, 0);
  for (const char* w : {"w0.5", "w1"}) expect_same_shards(dir_ / "fresh" / w, dir_ / "partial" / w);
}

TEST_F(MergeFaults, AWeightThatOverflowsStopsTheMergeUnlessAllowed) {
  // F16 tops out at 65504: w * d passes it for most elements.
  const std::string args = "merge " + fam_args(dir_ / "fam") + " -w 1e9 --dtype F16 -q -o ";
  const auto r = run_rvec(args + q(dir_ / "out"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("turned"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("NaN or Inf"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir_ / "out"));

  const auto allowed = run_rvec(args + q(dir_ / "allowed") + " --max-nonfinite 100000000");
  ASSERT_EQ(allowed.exit_code, 0) << allowed.output;
  const auto provenance = nlohmann::json::parse(test::read_file(dir_ / "allowed" / "rvec_provenance.json"));
  EXPECT_FALSE(provenance["new_nonfinite_values"].empty());
}

// One NaN in post turned every kept element of its tensor into NaN (rescale:
// l1, through the l1 sum), or silently dropped the vector there (ties), and
// the run passed: a block whose inputs held any NaN was not counted.
TEST_F(MergeFaults, ANaNThatAMethodWouldSpreadOverATensorIsRefusedNamingIt) {
  const fs::path fam = dir_ / "one";
  ASSERT_EQ(run_rvec("gen-family " + q(fam) + " -q").exit_code, 0);
  const std::string tensor = "model.layers.0.mlp.up_proj.weight";
  test::poison(fam / "post" / "model.safetensors", tensor, 1);
  const std::string args = "merge " + fam_args(fam) + " -q ";
  for (const auto& [method, statistic] : {std::pair{"magnitude --param rescale=l1", "l1 sum (rescale: l1)"},
                                          std::pair{"ties --param rescale=l1", "l1 sum (rescale: l1)"},
                                          std::pair{"random", "norm"}, std::pair{"norm_matched", "norm"}}) {
    const auto r = run_rvec(args + "-w 1 --method " + method + " -o " + q(dir_ / "out"));
    EXPECT_EQ(r.exit_code, 4) << method << "\n" << r.output;
    EXPECT_NE(r.output.find("tensor " + tensor + ": vector 1 holds NaN or Inf (an input's, or post - pre beyond f32), so "
                            "its " + statistic + " is not finite"),
              std::string::npos)
        << method << "\n" << r.output;
    EXPECT_FALSE(fs::exists(dir_ / "out"));
  }
  // Without a tensor-wide statistic the NaN stays where it was (docs/merging.md),
  // in a quantized GGUF block with the rest of its block.
  EXPECT_EQ(run_rvec(args + "-w 1 --method ties -o " + q(dir_ / "ties")).exit_code, 0);
  const auto q8 = run_rvec(args + "-w 1 --format gguf --type q8_0 -o " + q(dir_ / "one.gguf"));
  EXPECT_EQ(q8.exit_code, 0) << q8.output;

  // Values that overflow beside the NaN are new NaN/Inf all the same.
  const auto allowed = run_rvec(args + "-w 1e9 --dtype F16 --max-nonfinite 100000000 -o " + q(dir_ / "allowed"));
  ASSERT_EQ(allowed.exit_code, 0) << allowed.output;
  const auto provenance = nlohmann::json::parse(test::read_file(dir_ / "allowed" / "rvec_provenance.json"));
  EXPECT_NE(provenance["new_nonfinite_values"].dump().find(tensor), std::string::npos)
      << provenance["new_nonfinite_values"].dump();
}

// A partial folder left by an earlier run (here: a failed one, with junk in
// it) is freed by the next run, so it counts as available space.
TEST_F(MergeFaults, AnEarlierPartialFolderCountsAsFreeSpace) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a small tmpfs";
  const fs::path disk = dir_ / "disk";
  fs::create_directories(disk);
  if (::mount("tmpfs", disk.c_str(), "tmpfs", 0, "size=4m") != 0) GTEST_SKIP() << "cannot mount a tmpfs here";
  const fs::path partial = disk / ".out.rvec-partial";
  fs::create_directories(partial);
  test::write_file(partial / "model-00001-of-00009.safetensors", std::string(3'900'000, 'x'));
  const auto r = run_rvec("merge " + fam_args(dir_ / "fam") + " -w 1 -q -o " + q(disk / "out"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(disk / "out" / "model.safetensors"));
  EXPECT_FALSE(fs::exists(partial));
  ::umount(disk.c_str());
}

}  // namespace
}  // namespace rvec
