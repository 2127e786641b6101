// Merge methods and several vectors through the real CLI: flags, recipes,
// `rvec check --method`, and what the outputs say about how they were made.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "hf/model_folder.hpp"
#include "merge/open_family.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

namespace fs = std::filesystem;
using test::run_rvec;

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

class MergeMethodsCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    for (const char* seed : {"1", "2"}) {
      const auto r = run_rvec("gen-family " + q(dir_->path() / (std::string("fam") + seed)) + " --seed " + seed +
                              " --max-shard-size 100kB -q");
      ASSERT_EQ(r.exit_code, 0) << r.output;
    }
  }
  static void TearDownTestSuite() { delete dir_; }
  static fs::path fam(const char* which, const char* member) { return dir_->path() / which / member; }
  static std::string fam_args(const char* which = "fam1") {
    return "--pre " + q(fam(which, "pre")) + " --post " + q(fam(which, "post")) + " --target " + q(fam(which, "target"));
  }
  static fs::path out(const std::string& name) { return dir_->path() / "out" / name; }
  static test::TempDir* dir_;
};
test::TempDir* MergeMethodsCli::dir_ = nullptr;

using test::expect_same_tensors;

TEST_F(MergeMethodsCli, TheMethodAndItsValuesReachProvenanceCardAndMetadata) {
  const auto r = run_rvec("merge " + fam_args() + " --method dare_ties --density 0.3 --seed 9 --param vote=weighted -w 1 -q -o " +
                          q(out("dare")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto provenance = nlohmann::json::parse(test::read_file(out("dare") / "rvec_provenance.json"));
  EXPECT_EQ(provenance["method"]["name"], "dare_ties");
  EXPECT_EQ(provenance["method"]["params"]["density"], 0.3);
  EXPECT_EQ(provenance["method"]["params"]["seed"], 9);
  EXPECT_TRUE(provenance["method"]["params"]["seed"].is_number_integer());  // was 9.0
  EXPECT_EQ(provenance["method"]["params"]["vote"], "weighted");
  EXPECT_EQ(provenance["method"]["params"]["rescale"], "density");
  EXPECT_EQ(provenance["formula"], "target + w * dare_ties(post - pre)");
  const std::string card = test::read_file(out("dare") / "README.md");
  EXPECT_NE(card.find("method: `dare_ties`"), std::string::npos) << card;
  EXPECT_NE(card.find("seed 9"), std::string::npos) << card;
  const auto model = ModelFolder::open(out("dare").string());
  EXPECT_EQ(model->shards().front()->header().metadata.at("rvec.formula"), "target + w * dare_ties(post - pre)");
  const auto method = nlohmann::json::parse(model->shards().front()->header().metadata.at("rvec.method"));
  EXPECT_EQ(method["params"].dump(), R"({"density":0.3,"seed":9,"vote":"weighted"})");  // was 9.0
  const std::string recipe = test::read_file(out("dare") / "rvec_recipe.yaml");
  EXPECT_NE(recipe.find("method: dare_ties"), std::string::npos) << recipe;

  // The saved recipe redoes the same job: recognised as finished.
  const auto again = run_rvec("run " + q(out("dare") / "rvec_recipe.yaml") + " --json");
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(nlohmann::json::parse(again.output)["outputs"][0]["already_complete"], true) << again.output;
}

// --param weight=0.5 changed every byte but appeared only in the saved recipe.
TEST_F(MergeMethodsCli, EveryVectorsWeightFromTheCommandLineIsRecorded) {
  const auto r = run_rvec("merge " + fam_args() + " --method ties --param weight=0.5 -w 1 -q -o " + q(out("half")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto provenance = nlohmann::json::parse(test::read_file(out("half") / "rvec_provenance.json"));
  EXPECT_EQ(provenance["method"]["params"]["weight"], 0.5) << provenance["method"].dump();
  const std::string card = test::read_file(out("half") / "README.md");
  EXPECT_NE(card.find("every vector: weight = 0.5"), std::string::npos) << card;

  // The plan says what the provenance will (it listed only the method's own parameters).
  const auto plan = run_rvec("merge " + fam_args() + " --method ties --param weight=0.5 -w 1 --dry-run --json -o " +
                             q(out("half-plan")));
  ASSERT_EQ(plan.exit_code, 0) << plan.output;
  EXPECT_EQ(nlohmann::json::parse(plan.output)["method"], provenance["method"]) << plan.output;
}

// `check` and --dry-run warned that a tied target drops post's lm_head
// change; the run itself said nothing, on screen or in what it wrote.
TEST_F(MergeMethodsCli, ThePlansWarningsReachTheRunItsJsonProvenanceAndCard) {
  const fs::path tied = dir_->path() / "tied";
  ASSERT_EQ(run_rvec("gen-family " + q(tied) + " --tied -q").exit_code, 0);
  const std::string args = "merge --pre " + q(fam("fam1", "pre")) + " --post " + q(fam("fam1", "post")) + " --target " +
                           q(tied / "target") + " --method ties -w 1 -q -o ";
  const auto r = run_rvec(args + q(out("tied")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("warning target ("), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("post's lm_head change is dropped"), std::string::npos) << r.output;
  const auto provenance = nlohmann::json::parse(test::read_file(out("tied") / "rvec_provenance.json"));
  ASSERT_FALSE(provenance["findings"].empty());
  EXPECT_EQ(provenance["findings"][0]["severity"], "warning");
  EXPECT_NE(test::read_file(out("tied") / "README.md").find("- warnings:"), std::string::npos);
  const auto json = run_rvec(args + q(out("tied-json")) + " --json 2>/dev/null");
  ASSERT_EQ(json.exit_code, 0) << json.output;
  EXPECT_EQ(nlohmann::json::parse(json.output)["findings"], provenance["findings"]) << json.output;
}

// Two post models in folders of the same name were one name in the card:
// "ties(post − pre, post − pre)".
TEST_F(MergeMethodsCli, TheCardTellsApartInputsWhoseFoldersShareAName) {
  const fs::path recipe = dir_->path() / "two-posts.yaml";
  test::write_file(recipe, "method: ties\ntarget: " + fam("fam1", "target").string() + "\nweights: [1]\noutput: " +
                               out("two-posts").string() + "\nvectors:\n  - {pre: " + fam("fam1", "pre").string() +
                               ", post: " + fam("fam1", "post").string() + "}\n  - {pre: " +
                               fam("fam2", "pre").string() + ", post: " + fam("fam2", "post").string() + "}\n");
  const auto r = run_rvec("run -q " + q(recipe));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string card = test::read_file(out("two-posts") / "README.md");
  EXPECT_NE(card.find("ties(`fam1/post` − `fam1/pre`, `fam2/post` − `fam2/pre`)"), std::string::npos) << card;
  EXPECT_NE(card.find("- target\n"), std::string::npos) << card;  // a name no other input has stays bare
}

TEST_F(MergeMethodsCli, BadMethodFlagsAreUsageErrorsNamingTheProblem) {
  const std::pair<std::string, std::string> cases[] = {
      {"--method tiez", "unknown merge method \"tiez\""},
      {"--method ties --density 2", "density = 2 is outside [0, 1]"},
      {"--density 0.5", "density needs --method: task_arithmetic, the default, takes only weight and normalize"},
      {"--param foo=1", "no merge method takes a parameter \"foo\""},
      {"--method ties --gamma 0.1", "takes no parameter \"gamma\""},
      {"--method ties --param vote=loud", "vote is one of unweighted, weighted, not \"loud\""},
      {"--method ties --param density", "must look like NAME=VALUE"},
      {"--method dare_linear --param seed=0.5", "seed = 0.5 is not a whole number"},
      // Each of these once merged with a value nobody asked for (exit 0).
      {"--method dare_ties --seed 9007199254740993", "--seed 9007199254740993 is beyond 2^53"},
      {"--method dare_ties --param seed=9007199254740993", "9007199254740993 is beyond 2^53"},
      {"--method ties --density 0.2 --param density=0.5", "--density and --param density=... both set density"},
      {"--method ties --param vote=weighted --param vote=unweighted", "parameter \"vote\" is given twice"},
      {"--method ties --density ''", "--density: an empty value"},
      {"--method ''", "--method: an empty value"},
  };
  for (const auto& [flags, message] : cases) {
    const auto r = run_rvec("merge " + fam_args() + " -w 1 -q -o " + q(out("bad")) + " " + flags);
    EXPECT_EQ(r.exit_code, 2) << flags << ": " << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << flags << ": " << r.output;
    EXPECT_FALSE(fs::exists(out("bad")));
  }
  // What the default method takes needs no --method (it was refused, though
  // --method task_arithmetic --param weight=2 ran).
  const auto plain = run_rvec("merge " + fam_args() + " -w 1 --param weight=2 --dry-run --json -o " + q(out("w2")));
  ASSERT_EQ(plain.exit_code, 0) << plain.output;
  EXPECT_EQ(nlohmann::json::parse(plain.output)["tensors"][0]["vectors"][0]["weight"], 2.0) << plain.output;
}

TEST_F(MergeMethodsCli, CheckReportsThePlanOfEachMethod) {
  const std::string models = q(fam("fam1", "pre")) + " " + q(fam("fam1", "post")) + " " + q(fam("fam1", "target"));
  const auto r = run_rvec("check " + models + " --method ties --method dare_linear --density 0.25 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto methods = nlohmann::json::parse(r.output)["methods"];
  ASSERT_EQ(methods.size(), 2u);
  EXPECT_EQ(methods[0]["name"], "ties");
  EXPECT_EQ(methods[0]["params"]["density"], 0.25);
  EXPECT_EQ(methods[0]["tensors_by_statistics_passes"]["3"], 27);
  EXPECT_EQ(methods[1]["tensors_by_statistics_passes"]["0"], 27);
  EXPECT_TRUE(methods[1]["params"]["seed"].is_number_integer()) << r.output;  // was 0.0
  // Up to three statistics passes read the vectors up to three times more:
  // 4 x (pre + post) + target against 3 models once.
  const uint64_t once = methods[1]["bytes_to_read"];
  EXPECT_EQ(methods[0]["bytes_to_read"].get<uint64_t>(), once + 3 * (once / 3 * 2));
  const auto text = run_rvec("check " + models + " --method breadcrumbs --gamma 0.02");
  EXPECT_NE(text.output.find("method  breadcrumbs: δ = "), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("gamma 0.02"), std::string::npos) << text.output;
  const auto unused = run_rvec("check " + models + " --method ties --seed 3");
  EXPECT_EQ(unused.exit_code, 2) << unused.output;
  EXPECT_NE(unused.output.find("takes the parameter \"seed\""), std::string::npos) << unused.output;
}

// A vector saved in F32 by `rvec extract` stands for its pre/post pair bit
// for bit, also among several vectors combined by TIES.
TEST_F(MergeMethodsCli, ARecipesVectorsMayBeSavedVectorsOrPairs) {
  ASSERT_EQ(run_rvec("extract --pre " + q(fam("fam2", "pre")) + " --post " + q(fam("fam2", "post")) +
                     " --dtype F32 -q -o " + q(out("vector2")))
                .exit_code,
            0);
  const auto write_recipe = [&](const std::string& name, const std::string& second) {
    const fs::path path = out(name + ".yaml");
    test::write_file(path, "method: ties\nparams: {density: 0.3}\ntarget: " + fam("fam1", "target").string() +
                               "\nweights: [0.5, 1]\noutput: " + out(name).string() +
                               "\nmax_shard_size: 100kB\nvectors:\n  - pre: " + fam("fam1", "pre").string() +
                               "\n    post: " + fam("fam1", "post").string() +
                               "\n    weight: 0.7\n    density: [0.2, 0.4]\n  - " + second + "\n    weight: 0.4\n");
    return path;
  };
  const auto pairs = write_recipe("pairs", "pre: " + fam("fam2", "pre").string() + "\n    post: " +
                                               fam("fam2", "post").string());
  const auto saved = write_recipe("saved", "vector: " + out("vector2").string());
  for (const auto& recipe : {pairs, saved}) {
    const auto r = run_rvec("run " + q(recipe) + " -q");
    ASSERT_EQ(r.exit_code, 0) << recipe << ": " << r.output;
  }
  for (const char* w : {"w0.5", "w1"}) expect_same_tensors(out("pairs") / w, out("saved") / w);
  const auto provenance = nlohmann::json::parse(test::read_file(out("saved") / "w1" / "rvec_provenance.json"));
  EXPECT_EQ(provenance["formula"], "target + w * ties(post 1 - pre 1, vector 2)");
  EXPECT_EQ(provenance["vectors"][0]["density"], nlohmann::json::array({0.2, 0.4}));
  EXPECT_EQ(provenance["inputs"]["vectors"].size(), 2u);
  const auto plan = run_rvec("run " + q(pairs) + " --dry-run");
  EXPECT_NE(plan.output.find("v1 weight 0.7 density 0.4"), std::string::npos) << plan.output;
}

// A recipe's variants are built in the merge's read pass, each into its own
// folder, each the same as its own `rvec merge`, each with a recipe that
// redoes it alone.
TEST_F(MergeMethodsCli, RecipeVariantsShareTheMergesReadPass) {
  const fs::path recipe = dir_->path() / "variants.yaml";
  test::write_file(recipe, "kind: merge\npre: " + fam("fam1", "pre").string() + "\npost: " + fam("fam1", "post").string() +
                               "\ntarget: " + fam("fam1", "target").string() + "\nweights: [0.5, 1]\noutput: " +
                               out("variants").string() +
                               "\nmax_shard_size: 100kB\nvariants:\n"
                               "  - {name: ties30, method: ties, params: {density: 0.3}, weights: [1]}\n"
                               "  - {name: dare, method: dare_ties, params: {density: 0.5, seed: 3}}\n");
  const auto shared = run_rvec("run " + q(recipe) + " --json");
  ASSERT_EQ(shared.exit_code, 0) << shared.output;
  const auto jobs = nlohmann::json::parse(shared.output)["jobs"];
  ASSERT_EQ(jobs.size(), 3u);

  const auto plain = run_rvec("merge " + fam_args() + " -w 0.5,1 --max-shard-size 100kB -q -o " + q(out("v-plain")));
  const auto ties = run_rvec("merge " + fam_args() + " --method ties --density 0.3 -w 1 --max-shard-size 100kB --json -o " +
                             q(out("v-ties")));
  const auto dare = run_rvec("merge " + fam_args() + " --method dare_ties --density 0.5 --seed 3 -w 0.5,1 "
                             "--max-shard-size 100kB -q -o " + q(out("v-dare")));
  ASSERT_EQ(plain.exit_code + ties.exit_code + dare.exit_code, 0) << plain.output << ties.output << dare.output;
  for (const char* w : {"w0.5", "w1"}) {
    expect_same_tensors(out("variants") / w, out("v-plain") / w);
    expect_same_tensors(out("variants") / "dare" / w, out("v-dare") / w);
  }
  expect_same_tensors(out("variants") / "ties30" / "w1", out("v-ties"));
  // The pass read what TIES alone reads (its statistics passes included): nothing more for the others.
  EXPECT_EQ(jobs[0]["bytes_read"], nlohmann::json::parse(ties.output)["bytes_read"]);
  EXPECT_EQ(jobs[2]["bytes_read"], jobs[0]["bytes_read"]);

  const auto again = run_rvec("run " + q(out("variants") / "ties30" / "w1" / "rvec_recipe.yaml") + " --json");
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(nlohmann::json::parse(again.output)["outputs"][0]["already_complete"], true) << again.output;
}

// Two vectors from one base: the base is opened once, however its path is
// spelled, and read once per block for both (the same bytes as a second base
// would add are not read).
TEST_F(MergeMethodsCli, VectorsThatShareABaseReadItOnce) {
  const auto bytes_read = [&](const std::string& name, const fs::path& second_pre) {
    const fs::path recipe = dir_->path() / (name + ".yaml");
    test::write_file(recipe, "kind: merge\nvectors:\n  - {pre: " + fam("fam1", "pre").string() + ", post: " +
                                 fam("fam1", "post").string() + "}\n  - {pre: " + second_pre.string() + ", post: " +
                                 fam("fam2", "post").string() + "}\ntarget: " + fam("fam1", "target").string() +
                                 "\nweights: [1]\noutput: " + out(name).string() + "\n");
    const auto r = run_rvec("run " + q(recipe) + " --json");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return r.exit_code == 0 ? nlohmann::json::parse(r.output)["bytes_read"].get<uint64_t>() : 0;
  };
  const uint64_t shared = bytes_read("shared", fam("fam1", "pre"));
  const uint64_t respelled = bytes_read("respelled", dir_->path() / "fam1" / "." / "pre" / "");
  const uint64_t distinct = bytes_read("distinct", fam("fam2", "pre"));
  EXPECT_EQ(respelled, shared);
  EXPECT_EQ(distinct - shared, ModelFolder::open(fam("fam1", "pre").string())->tensor_bytes());
}

// A hidden name could be the merge's own staging folder (.w1.rvec-partial):
// the merge's output would be renamed into place with the variant inside it.
TEST_F(MergeMethodsCli, AVariantNamedLikeAHiddenFolderIsRefused) {
  const fs::path recipe = dir_->path() / "hidden-variant.yaml";
  test::write_file(recipe, "pre: a\npost: b\ntarget: c\nweights: [1]\noutput: o\nvariants:\n"
                           "  - {name: .w1.rvec-partial, method: ties}\n");
  const auto r = run_rvec("run " + q(recipe));
  EXPECT_EQ(r.exit_code, 4) << r.output;
  EXPECT_NE(r.output.find("not starting with '.'"), std::string::npos) << r.output;
}

// A variant's method refuses the merge's per-vector values it does not take;
// the error names the variant.
TEST_F(MergeMethodsCli, AVariantsPlanningErrorNamesTheVariant) {
  const fs::path recipe = dir_->path() / "variant-error.yaml";
  test::write_file(recipe, "kind: merge\nmethod: ties\nvectors:\n  - {pre: " + fam("fam1", "pre").string() +
                               ", post: " + fam("fam1", "post").string() + ", density: 0.3}\ntarget: " +
                               fam("fam1", "target").string() + "\nweights: [1]\noutput: " + out("variant-error").string() +
                               "\nvariants:\n  - {name: plain, method: task_arithmetic}\n");
  const auto r = run_rvec("run " + q(recipe));
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("variant \"plain\": "), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out("variant-error")));
}

// A 300-byte variant name passed planning and failed when the merge came to
// write it (ENAMETOOLONG), leaving the merge's partial folder behind.
TEST_F(MergeMethodsCli, ANameTooLongForTheFileSystemIsRefusedBeforeAnyWork) {
  const fs::path recipe = dir_->path() / "long-variant.yaml";
  test::write_file(recipe, "kind: merge\npre: " + fam("fam1", "pre").string() + "\npost: " + fam("fam1", "post").string() +
                               "\ntarget: " + fam("fam1", "target").string() + "\nweights: [1]\noutput: " +
                               out("long-variant").string() + "\nvariants:\n  - {name: " + std::string(300, 'v') +
                               ", method: ties}\n");
  const auto r = run_rvec("run " + q(recipe));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("a folder name of 300 bytes; a file system takes at most 255"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out("long-variant")));
  EXPECT_FALSE(fs::exists(out(".long-variant.rvec-partial")));
  const auto partial = run_rvec("merge " + fam_args() + " -w 1 -q -o " + q(out(std::string(250, 'o'))));
  EXPECT_EQ(partial.exit_code, 2) << partial.output;
  EXPECT_NE(partial.output.find("would have 264 bytes, more than the 255"), std::string::npos) << partial.output;
}

TEST_F(MergeMethodsCli, AVariantNamedLikeAWeightFolderIsRefused) {
  const fs::path recipe = dir_->path() / "bad-variant.yaml";
  test::write_file(recipe, "pre: a\npost: b\ntarget: c\nweights: [1]\noutput: o\nvariants:\n  - {name: w1.5, method: ties}\n");
  const auto r = run_rvec("run " + q(recipe));
  EXPECT_EQ(r.exit_code, 4) << r.output;  // a bad recipe file, like every recipe error
  EXPECT_NE(r.output.find("variant name \"w1.5\" is the folder of a weight"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace rvec
