// mergekit configs through `rvec run`: each supported method gives the bytes
// of rvec's own recipe for the same merge, and what rvec does not do is
// refused naming the field.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "merge/open_family.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

namespace fs = std::filesystem;
using test::run_rvec;

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

class Mergekit : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    const auto r = run_rvec("gen-family " + q(dir_->path() / "fam") + " --max-shard-size 100kB -q");
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string model(const char* member) { return (dir_->path() / "fam" / member).string(); }
  static fs::path path(const std::string& name) { return dir_->path() / name; }
  static test::TempDir* dir_;
};
test::TempDir* Mergekit::dir_ = nullptr;

using test::expect_same_tensors;
using test::shards_of;

struct Equivalent {
  const char* method;
  std::string mergekit_parameters;  // global `parameters:` of the mergekit config
  std::string post_parameters;      // the first model's
  std::string target_parameters;    // the second model's
  std::string rvec_params;          // rvec's `params:` for the same merge
  std::string rvec_first, rvec_second;  // rvec's per-vector fields
};

// Two fine-tunes of the same base (the family's post and target) merged onto
// that base, as mergekit does it and as an rvec recipe says it.
TEST_F(Mergekit, EachMethodGivesTheTensorsOfRvecsOwnRecipe) {
  const Equivalent cases[] = {
      {"task_arithmetic", "{}", "{weight: 0.7}", "{weight: 0.3}", "{normalize: false}", "weight: 0.7", "weight: 0.3"},
      {"ties", "{normalize: true, int8_mask: true}", "{weight: 1, density: [1, 0.3]}", "{weight: 0.5, density: 0.5}",
       "{vote: weighted, normalize: true, rescale: none}", "weight: 1\n    density: [1, 0.3]",
       "weight: 0.5\n    density: 0.5"},
      {"dare_linear", "{weight: 0.6, density: 0.4}", "{}", "{density: 0.7}",
       "{weight: 0.6, density: 0.4, rescale: l1, normalize: false}", "weight: 0.6", "density: 0.7"},
      {"dare_ties", "{rescale: false, lambda: 1.5}", "{weight: 1, density: 0.5}",
       "{weight: [{filter: mlp, value: 0.5}, {value: 0}], density: 0.5}", "{vote: weighted, rescale: none}",
       "weight: 1\n    density: 0.5", "weight: [{filter: mlp, value: 0.5}, {value: 0}]\n    density: 0.5"},
      {"breadcrumbs", "{gamma: 0.02}", "{weight: 1, density: 0.8}", "{weight: 1, density: 0.9, gamma: 0.05}",
       "{gamma: 0.02, rescale: none}", "weight: 1\n    density: 0.8", "weight: 1\n    density: 0.9\n    gamma: 0.05"},
  };
  for (const auto& c : cases) {
    const std::string name = c.method;
    const fs::path mergekit_yaml = path(name + "-mergekit.yml");
    test::write_file(mergekit_yaml, "merge_method: " + name + "\nbase_model: " + model("pre") +
                                        "\nparameters: " + c.mergekit_parameters + "\nmodels:\n  - model: " +
                                        model("pre") + "\n  - model: " + model("post") + "\n    parameters: " +
                                        c.post_parameters + "\n  - model: " + model("target") +
                                        "\n    parameters: " + c.target_parameters + "\ndtype: bfloat16\n");
    const std::string w = name == "dare_ties" ? "1.5" : "1";
    const fs::path rvec_yaml = path(name + "-rvec.yaml");
    test::write_file(rvec_yaml, "method: " + name + "\nparams: " + c.rvec_params + "\ntarget: " + model("pre") +
                                    "\nweights: [" + w + "]\noutput: " + path(name + "-rvec").string() +
                                    "\nmax_shard_size: 5GB\nvectors:\n  - pre: " + model("pre") + "\n    post: " +
                                    model("post") + "\n    " + c.rvec_first + "\n  - pre: " + model("pre") +
                                    "\n    post: " + model("target") + "\n    " + c.rvec_second + "\n");
    const auto a = run_rvec("run " + q(mergekit_yaml) + " -q -o " + q(path(name + "-mergekit")));
    ASSERT_EQ(a.exit_code, 0) << name << ": " << a.output;
    const auto b = run_rvec("run " + q(rvec_yaml) + " -q");
    ASSERT_EQ(b.exit_code, 0) << name << ": " << b.output;
    expect_same_tensors(path(name + "-mergekit"), path(name + "-rvec"));
    // The output's recipe is rvec's, and redoes the merge.
    const auto again = run_rvec("run " + q(path(name + "-mergekit") / "rvec_recipe.yaml") + " --json");
    ASSERT_EQ(again.exit_code, 0) << again.output;
    EXPECT_EQ(nlohmann::json::parse(again.output)["outputs"][0]["already_complete"], true) << name;
  }
}

// mergekit's own examples/ties.yml, on local models (its third model a copy
// of post): density and weight gradients, a filtered weight, normalize,
// int8_mask and a float16 output.
TEST_F(Mergekit, TheTiesExampleWithGradientsAndFiltersRuns) {
  const fs::path third = path("third-model");
  fs::copy(model("post"), third, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  const fs::path config = path("ties-example.yml");
  test::write_file(config, "models:\n  - model: " + model("post") +
                               "\n    parameters:\n      density: [1, 0.7, 0.1]\n      weight: 1.0\n  - model: " +
                               model("target") +
                               "\n    parameters:\n      density: 0.5\n      weight: [0, 0.3, 0.7, 1]\n  - model: " +
                               third.string() +
                               "\n    parameters:\n      density: 0.33\n      weight:\n        - filter: mlp\n"
                               "          value: 0.5\n        - value: 0\n"
                               "merge_method: ties\nbase_model: " +
                               model("pre") + "\nparameters:\n  normalize: true\n  int8_mask: true\ndtype: float16\n");
  const auto r = run_rvec("run " + q(config) + " -o " + q(path("ties-example")) + " --json -q");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto provenance = nlohmann::json::parse(test::read_file(path("ties-example") / "rvec_provenance.json"));
  EXPECT_EQ(provenance["dtype"], "F16");
  EXPECT_EQ(provenance["method"]["params"]["vote"], "weighted");
  EXPECT_EQ(provenance["vectors"][1]["weight"], nlohmann::json::array({0, 0.3, 0.7, 1}));
  const auto plan = run_rvec("run " + q(config) + " -o " + q(path("ties-plan")) + " --dry-run");
  EXPECT_NE(plan.output.find("model.layers.1.mlp.up_proj.weight  F16 [176, 64]  combine v1 density 0.1 v2 density 0.5 "
                             "v3 weight 0.5 density 0.33"),
            std::string::npos)
      << plan.output;
  EXPECT_NE(plan.output.find("model.layers.1.self_attn.q_proj.weight  F16 [64, 64]  combine v1 density 0.1 v2 density "
                             "0.5 v3 weight 0 density 0.33"),
            std::string::npos)
      << plan.output;
}

// The refusal to replace an output said "pass --overwrite", which `rvec run` did not take.
TEST_F(Mergekit, AChangedConfigReplacesItsOutputWithOverwrite) {
  const fs::path config = path("changing.yml");
  const std::string head = "merge_method: ties\nbase_model: " + model("pre") + "\nmodels:\n  - model: " + model("post");
  test::write_file(config, head + "\n    parameters: {weight: 1, density: 0.5}\n");
  const std::string run = "run " + q(config) + " -q -o " + q(path("changing"));
  ASSERT_EQ(run_rvec(run).exit_code, 0);
  test::write_file(config, head + "\n    parameters: {weight: 1, density: 0.4}\n");
  const auto refused = run_rvec(run);
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_NE(refused.output.find("pass --overwrite to replace it"), std::string::npos) << refused.output;
  const auto replaced = run_rvec(run + " --overwrite");
  EXPECT_EQ(replaced.exit_code, 0) << replaced.output;
  EXPECT_NE(test::read_file(path("changing") / "rvec_recipe.yaml").find("density: 0.4"), std::string::npos);
}

TEST_F(Mergekit, WhatRvecDoesNotDoIsRefusedNamingTheField) {
  const std::string base = "base_model: " + model("pre") + "\n";
  const auto post_with = [](const std::string& parameters) {
    return "models:\n  - model: " + model("post") + "\n    parameters: " + parameters + "\n";
  };
  const std::string models = post_with("{weight: 1}");
  const std::pair<std::string, std::string> cases[] = {
      {"merge_method: slerp\n" + base + models, "merge_method \"slerp\" is not supported by rvec"},
      {"merge_method: ties\n" + base + models + "slices: []\n", "field \"slices\" of mergekit configs is not supported"},
      {"merge_method: ties\n" + base + models + "tokenizer_source: union\n", "tokenizer_source \"union\" is not supported"},
      {"merge_method: ties\n" + base + models + "chat_template: chatml\n", "field \"chat_template\""},
      {"merge_method: ties\n" + base + models + "parameters: {epsilon: 0.1}\n", "parameter \"epsilon\" is not supported for ties"},
      {"merge_method: ties\n" + base + models + "parameters: {lambda: [1, 2]}\n", "field \"lambda\" must be one number"},
      {"merge_method: ties\n" + base + post_with("{weight: 1, normalize: true}"),
       "\"normalize\" is one value for the whole merge"},
      {"merge_method: ties\n" + base + "models:\n  - model: " + model("post") + "\n", "has no weight"},
      {"merge_method: ties\n" + base + "models:\n  - model: " + model("post") + "+lora\n    parameters: {weight: 1}\n",
       "LoRA references"},
      {"merge_method: ties\n" + models, "needs base_model"},
      {"merge_method: ties\n" + base + models + "dtype: int8\n", "dtype \"int8\" is not bfloat16, float16 or float32"},
      {"merge_method: ties\n" + base + models + "random_field: 1\n", "unknown field \"random_field\""},
      // Each of these once ran: a second vector, a key read once, a document ignored.
      {"merge_method: ties\n" + base + models + "  - model: " + model("post") + "\n    parameters: {weight: 0.5}\n",
       "is listed twice (first on line 4)"},
      {"merge_method: ties\n" + base + models + "merge_method: linear\n", "duplicate key \"merge_method\" (first on line 1)"},
      {"merge_method: ties\n" + base + models + "---\nmerge_method: linear\n", "a second YAML document"},
      {"merge_method: ties\n" + base + post_with("{weight: 010}"),
       "has a leading zero"},
      // Each of these once crashed, ran, or was refused without naming the line.
      {"merge_method: ties\n" + base + "models:\n  - model: \"\"\n    parameters: {weight: 1}\n",
       ".yml:4: field \"model\" is empty"},
      {"merge_method: ties\n" + base + models + "parameters: {lambda: 010}\n", "field \"lambda\": \"010\" has a leading zero"},
      {"merge_method: ties\n" + base + models + "parameters: {lambda: 1e39}\n", "field \"lambda\" (rvec's w) = 1e+39 is outside"},
      {"merge_method: task_arithmetic\n" + base + post_with("{weight: 1, density: 0.5}"),
       ".yml:5: parameter \"density\" is not supported for task_arithmetic"},
      {"merge_method: ties\n" + base + post_with("{weight: 0x10}"),
       ".yml:5: field \"weight\" takes a number, not \"0x10\""},
      {"merge_method: ties\n" + base + "models:\n  - model: " + model("pre") + "\n    parameters: {weight: abc}\n" +
           models.substr(8),
       "field \"weight\" takes a number, not \"abc\""},
      {"merge_method: ties\n" + base + models + "dtype: bf16\n", "dtype \"bf16\" is not bfloat16, float16 or float32"},
      {"merge_method: ties\n" + base + models + "dtype: int8\nout_dtype: float16\n", "dtype \"int8\""},
      {"merge_method: ties\n" + base + post_with("{weight: [{filter: mlp, value: 0.5}]}"),
       "vector 1 has no weight here"},
      // Each of these once ran where mergekit refuses: PyYAML reads y as text, 0 as a number.
      {"merge_method: ties\n" + base + models + "parameters: {normalize: y}\n", ".yml:6: field \"normalize\" must be true or false"},
      {"merge_method: ties\n" + base + post_with("{weight: 1, density: [{filter: 0, value: 0.5}, {value: 0.2}]}"),
       ".yml:5: field \"filter\" must be text, and YAML reads 0 as a number, a boolean or a date: quote it (\"0\")"},
  };
  int i = 0;
  for (const auto& [yaml, message] : cases) {
    const fs::path config = path("bad" + std::to_string(i++) + ".yml");
    test::write_file(config, yaml);
    const auto r = run_rvec("run " + q(config) + " -o " + q(path("never")));
    EXPECT_NE(r.exit_code, 0) << yaml;
    EXPECT_NE(r.exit_code, 1) << yaml << r.output;  // not an internal error
    EXPECT_NE(r.output.find(message), std::string::npos) << yaml << "\n" << r.output;
    EXPECT_FALSE(fs::exists(path("never")));
  }
  // Top-level density filters that leave tensors out: mergekit's default there, not rvec's (0.2 for ties).
  const fs::path filtered = path("density-filters.yml");
  test::write_file(filtered, "merge_method: ties\n" + base + models + "parameters: {density: [{filter: mlp, value: 0.5}]}\n");
  const auto filtered_plan = run_rvec("run " + q(filtered) + " -o " + q(path("filtered-out")) + " --dry-run --json");
  ASSERT_EQ(filtered_plan.exit_code, 0) << filtered_plan.output;
  const auto filtered_json = nlohmann::json::parse(filtered_plan.output);  // outlives the loop
  for (const auto& t : filtered_json["tensors"]) {
    if (t["vectors"].empty()) continue;
    const bool mlp = t["name"].get<std::string>().find("mlp") != std::string::npos;
    EXPECT_EQ(t["vectors"][0]["density"], mlp ? 0.5 : 1.0) << t.dump();
  }

  // Empty optional fields are absent to mergekit (pydantic's None); "torch." prefixes its dtypes.
  const fs::path empty = path("empty-fields.yml");
  test::write_file(empty, "merge_method: ties\n" + base + models +
                              "parameters:\nchat_template:\ntokenizer_source:\nslices:\ndtype: torch.float16\n");
  const auto plan = run_rvec("run " + q(empty) + " -o " + q(path("empty-out")) + " --dry-run --json");
  ASSERT_EQ(plan.exit_code, 0) << plan.output;
  EXPECT_EQ(nlohmann::json::parse(plan.output)["tensors"][0]["dtype"], "F16") << plan.output;

  const fs::path config = path("no-output.yml");
  test::write_file(config, "merge_method: ties\n" + base + models);
  const auto r = run_rvec("run " + q(config));
  EXPECT_NE(r.output.find("give one with -o OUT"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace rvec
