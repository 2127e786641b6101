// GGUF through the real CLI, proved with llama.cpp itself: rvec export-gguf
// and rvec merge --format gguf write files that llama.cpp (node-llama-cpp's
// prebuilt CPU build, tests/gguf/npm) loads and runs to exactly the greedy
// tokens rvec generate produces from the safetensors folder.
#include <gtest/gtest.h>

#include <set>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>

#include "gguf/llama_cpp.hpp"
#include "io/gguf.hpp"
#include "cli/gguf_cli_util.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

namespace fs = std::filesystem;
using test::export_gguf;
using test::rounded_copy;
using test::run_rvec;

fs::path family(const std::string& member) { return test::demo_family(member); }
fs::path stories() { return test::stories260k(); }

std::string q(const fs::path& p) { return test::quoted(p); }

std::vector<int32_t> rvec_greedy(const fs::path& model, const std::string& ids, size_t count) {
  const auto r = run_rvec("generate " + q(model) + " --ids " + ids + " -n " + std::to_string(count) + " --json --threads 1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return nlohmann::json::parse(r.output.substr(r.output.find('{'))).at("ids").get<std::vector<int32_t>>();
}

std::vector<int32_t> llama_greedy(const fs::path& gguf, const std::vector<int32_t>& prompt, size_t count) {
  std::string error;
  const auto ids = test::llama_generate(gguf.string(), prompt, count, &error);
  EXPECT_TRUE(ids.has_value()) << error;
  return ids.value_or(std::vector<int32_t>{});
}



class GgufLlamaCpp : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = test::skip_reason(); !why.empty()) GTEST_SKIP() << why;
  }
  test::TempDir dir_;
};

TEST_F(GgufLlamaCpp, DemoFamilyRunsInLlamaCppToRvecsGreedyTokens) {
  for (const std::string member : {"target", "post"}) {
    for (const auto& [dtype, type] : {std::pair{"F32", "f32"}, std::pair{"F16", "f16"}, std::pair{"BF16", "bf16"}}) {
      const fs::path folder = rounded_copy(family(member), dtype, dir_ / (member + dtype));
      const fs::path gguf = dir_ / (member + "-" + type + ".gguf");
      export_gguf(folder, gguf, type);
      const auto expected = rvec_greedy(folder, test::kFamilyPromptIds, 24);
      EXPECT_EQ(llama_greedy(gguf, test::kFamilyPrompt, 24), expected) << member << " " << type;
    }
  }
}

TEST_F(GgufLlamaCpp, Stories260KRunsInLlamaCppToTheGoldenTokens) {
  if (!fs::exists(stories())) GTEST_SKIP() << "../shared/data/stories260K is absent";
  const auto golden = nlohmann::json::parse(test::read_file(stories() / "expected.json"))["greedy_ids"].get<std::vector<int32_t>>();
  for (const auto& [dtype, type] : {std::pair{"F32", "f32"}, std::pair{"F16", "f16"}, std::pair{"BF16", "bf16"}}) {
    const fs::path folder = rounded_copy(stories(), dtype, dir_ / dtype);
    const fs::path gguf = dir_ / (std::string(type) + ".gguf");
    export_gguf(folder, gguf, type);
    EXPECT_EQ(llama_greedy(gguf, {1}, 60), rvec_greedy(folder, "1", 60)) << type;
  }
  const fs::path f32 = dir_ / "direct.gguf";
  export_gguf(stories(), f32, "f32");
  EXPECT_EQ(llama_greedy(f32, {1}, 200), std::vector<int32_t>(golden.begin() + 1, golden.end()));
}

// stories260K (a Llama) with Llama 3's rope_scaling in its config.json.
fs::path llama3_copy(const fs::path& out, double factor) {
  fs::create_directories(out);
  fs::copy_file(stories() / "model.safetensors", out / "model.safetensors");
  auto config = nlohmann::json::parse(test::read_file(stories() / "config.json"));
  config["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", factor}, {"low_freq_factor", 1.0},
                            {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 64}};
  test::write_file(out / "config.json", config.dump());
  return out;
}

std::vector<float> rope_freqs_of(const fs::path& gguf) {
  const GgufFile file = read_gguf_file(gguf.string());
  for (const auto& t : file.tensors) {
    if (t.name != "rope_freqs.weight") continue;
    std::vector<float> values(t.ne.at(0));
    const std::string bytes = test::read_file(gguf);
    std::memcpy(values.data(), bytes.data() + file.data_start + t.offset, values.size() * 4);
    return values;
  }
  return {};
}

// Llama 3's rope scaling travels as the rope_freqs.weight tensor llama.cpp's
// converter generates: the values transformers computes (here in double), and
// llama.cpp uses them (all ones give the unscaled model's tokens; factor 4
// gives others).
TEST_F(GgufLlamaCpp, Llama3RopeScalingBecomesTheRopeFreqsTensor) {
  if (!fs::exists(stories())) GTEST_SKIP() << "../shared/data/stories260K is absent";
  export_gguf(llama3_copy(dir_ / "llama3", 4.0), dir_ / "llama3.gguf", "f32");
  const std::vector<float> factors = rope_freqs_of(dir_ / "llama3.gguf");
  ASSERT_EQ(factors.size(), 4u);  // head_dim 8
  const double pi = 3.14159265358979323846;
  for (size_t j = 0; j < factors.size(); ++j) {
    const double wavelen = 2 * pi * std::pow(10000.0, 2.0 * static_cast<double>(j) / 8.0);
    const double smooth = (64 / wavelen - 1) / (4 - 1);
    const double expected = wavelen < 16 ? 1 : wavelen > 64 ? 4 : 1 / ((1 - smooth) / 4 + smooth);
    EXPECT_NEAR(factors[j], expected, 1e-6 * expected) << j;
  }
  EXPECT_GT(factors[1], 1.0f);  // the blended band is exercised
  EXPECT_LT(factors[1], 4.0f);
  const auto inspect = run_rvec("inspect --json " + q(dir_ / "llama3.gguf"));
  EXPECT_EQ(nlohmann::json::parse(inspect.output)["metadata"].count("llama.rope.scaling.type"), 0u);

  export_gguf(llama3_copy(dir_ / "ones", 1.0), dir_ / "ones.gguf", "f32");
  export_gguf(stories(), dir_ / "plain.gguf", "f32");
  const auto plain = llama_greedy(dir_ / "plain.gguf", {1}, 120);
  EXPECT_EQ(llama_greedy(dir_ / "ones.gguf", {1}, 120), plain);
  EXPECT_NE(llama_greedy(dir_ / "llama3.gguf", {1}, 120), plain);
}

TEST_F(GgufLlamaCpp, QuantisedFilesLoadAndRun) {
  for (const std::string type : {"q8_0", "q4_k_m"}) {
    for (const fs::path& model : {family("target"), stories()}) {
      if (!fs::exists(model)) continue;
      const fs::path gguf = dir_ / (model.filename().string() + "-" + type + ".gguf");
      export_gguf(model, gguf, type);
      EXPECT_TRUE(test::ggml()->accepts_gguf(gguf.c_str())) << gguf;
      EXPECT_FALSE(llama_greedy(gguf, {1}, 8).empty()) << gguf;
    }
  }
}

TEST_F(GgufLlamaCpp, SplitFilesLoadFromTheFirst) {
  const fs::path whole = dir_ / "whole.gguf", split = dir_ / "split.gguf";
  export_gguf(family("target"), whole, "f32");
  export_gguf(family("target"), split, "f32", "--split-max-size 150kB");
  EXPECT_FALSE(fs::exists(split));
  EXPECT_TRUE(fs::exists(dir_ / "split-00001-of-00004.gguf"));
  EXPECT_TRUE(fs::exists(dir_ / "split-00004-of-00004.gguf"));
  EXPECT_EQ(llama_greedy(dir_ / "split-00001-of-00004.gguf", test::kFamilyPrompt, 16), llama_greedy(whole, test::kFamilyPrompt, 16));
}

// Writing the merge as GGUF in its one read pass gives the bytes of exporting
// the F32 safetensors merge: both round (or quantise) the f32 result once.
TEST(GgufCli, MergeAsGgufEqualsExportOfTheSafetensorsMerge) {
  test::TempDir dir;
  const std::string inputs = "--pre " + q(family("pre")) + " --post " + q(family("post")) + " --target " + q(family("target"));
  const auto safetensors = run_rvec("merge " + inputs + " -w 0.5,1 --dtype F32 -o " + q(dir / "st") + " -q");
  ASSERT_EQ(safetensors.exit_code, 0) << safetensors.output;
  for (const std::string type : {"f32", "f16", "bf16", "q8_0", "q4_k_m"}) {
    const auto direct = run_rvec("merge " + inputs + " -w 0.5,1 --format gguf --type " + type + " -o " + q(dir / type) + " -q");
    ASSERT_EQ(direct.exit_code, 0) << direct.output;
    for (const std::string w : {"w0.5", "w1"}) {
      export_gguf(dir / "st" / w, dir / ("export-" + type) / (w + ".gguf"), type);
      EXPECT_EQ(test::read_file(dir / type / (w + ".gguf")), test::read_file(dir / ("export-" + type) / (w + ".gguf")))
          << type << " " << w;
    }
  }
  const auto inspect = run_rvec("inspect --json " + q(dir / "q8_0" / "w0.5.gguf"));
  ASSERT_EQ(inspect.exit_code, 0) << inspect.output;
  const auto j = nlohmann::json::parse(inspect.output);
  EXPECT_EQ(j["metadata"]["general.name"], "w0.5");
  EXPECT_EQ(j["metadata"]["general.rvec.w"], "0.5");
  EXPECT_EQ(j["metadata"]["general.rvec.formula"], "target + w * (post - pre)");
  EXPECT_EQ(j["metadata"]["general.rvec.inputs.post"], "post");
  EXPECT_EQ(j["metadata"]["general.file_type"], 7);
  EXPECT_EQ(j["metadata"]["tokenizer.ggml.pre"], "qwen2");
  EXPECT_EQ(j["metadata"]["tokenizer.ggml.tokens"]["count"], 576);
  EXPECT_EQ(j["types"]["Q8_0"]["tensors"], 15);
}

// A merge method over several vectors writes GGUF in the same pass, equal to
// the export of its safetensors merge, and records every input by role.
TEST(GgufCli, SeveralVectorsByAMethodAsGgufEqualExportOfTheSafetensorsMerge) {
  test::TempDir dir;
  const auto recipe = [&](const std::string& output, const std::string& format) {
    return "target: " + family("target").string() + "\nweights: [1]\noutput: " + (dir / output).string() +
           "\nmethod: dare_ties\nparams: {density: 0.5, seed: 3}\n" + format + "vectors:\n  - {pre: " +
           family("pre").string() + ", post: " + family("post").string() + ", weight: 0.5}\n  - {pre: " +
           family("pre").string() + ", post: " + family("target").string() + ", weight: 0.5}\n";
  };
  test::write_file(dir / "st.yaml", recipe("st", "dtype: F32\n"));
  fs::create_directories(dir / "direct");
  test::write_file(dir / "gguf.yaml", recipe("direct/st.gguf", "format: gguf\ntype: q8_0\n"));
  for (const std::string name : {"st.yaml", "gguf.yaml"}) {
    const auto r = run_rvec("run -q " + q(dir / name));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  export_gguf(dir / "st", dir / "export.gguf", "q8_0");
  EXPECT_TRUE(test::read_file(dir / "direct" / "st.gguf") == test::read_file(dir / "export.gguf"));
  const auto inspect = run_rvec("inspect --json " + q(dir / "direct" / "st.gguf"));
  ASSERT_EQ(inspect.exit_code, 0) << inspect.output;
  const auto meta = nlohmann::json::parse(inspect.output)["metadata"];
  EXPECT_EQ(meta["general.rvec.formula"], "target + w * dare_ties(post 1 - pre 1, post 2 - pre 2)");
  EXPECT_EQ(meta["general.rvec.inputs.post_2"], "target");
  EXPECT_EQ(meta["general.rvec.inputs.pre_1"], "pre");
  // The settings, which no other key held (a GGUF file has no provenance file beside it).
  const auto method = nlohmann::json::parse(meta["general.rvec.method"].get<std::string>());
  EXPECT_EQ(method["name"], "dare_ties");
  EXPECT_EQ(method["params"]["seed"], 3);
  EXPECT_EQ(method["params"]["density"], 0.5);
  EXPECT_EQ(method["vectors"][1]["weight"], 0.5);
}

// A recipe's variants as GGUF: every job's output is the file its own
// `rvec merge --format gguf` writes, a job of one weight included
// (OUTPUT/w1.gguf, OUTPUT/<name>/w1.gguf).
TEST(GgufCli, RecipeVariantsAsGgufAreTheFilesOfTheirOwnMerges) {
  test::TempDir dir;
  const std::string inputs = "--pre " + q(family("pre")) + " --post " + q(family("post")) + " --target " + q(family("target"));
  test::write_file(dir / "variants.yaml", "pre: " + family("pre").string() + "\npost: " + family("post").string() +
                                              "\ntarget: " + family("target").string() + "\nweights: [1]\noutput: " +
                                              (dir / "v").string() + "\nformat: gguf\ntype: q8_0\nvariants:\n"
                                              "  - {name: ties30, method: ties, params: {density: 0.3}}\n"
                                              "  - {name: dare, method: dare_ties, params: {density: 0.5, seed: 3}, "
                                              "weights: [0.5, 1]}\n");
  const auto shared = run_rvec("run -q " + q(dir / "variants.yaml"));
  ASSERT_EQ(shared.exit_code, 0) << shared.output;
  const std::string gguf = " --format gguf --type q8_0 -q -o ";
  for (const auto& [args, out] : {std::pair{"-w 1", "plain/w1.gguf"}, std::pair{"--method ties --density 0.3 -w 1", "ties30/w1.gguf"},
                                  std::pair{"--method dare_ties --density 0.5 --seed 3 -w 0.5,1", "dare"}}) {
    fs::create_directories((dir / "alone" / out).parent_path());
    const auto alone = run_rvec("merge " + inputs + " " + args + gguf + q(dir / "alone" / out));
    ASSERT_EQ(alone.exit_code, 0) << alone.output;
  }
  EXPECT_TRUE(test::read_file(dir / "v" / "w1.gguf") == test::read_file(dir / "alone" / "plain" / "w1.gguf"));
  EXPECT_TRUE(test::read_file(dir / "v" / "ties30" / "w1.gguf") == test::read_file(dir / "alone" / "ties30" / "w1.gguf"));
  for (const char* w : {"w0.5.gguf", "w1.gguf"}) {
    EXPECT_TRUE(test::read_file(dir / "v" / "dare" / w) == test::read_file(dir / "alone" / "dare" / w)) << w;
  }
}

// A killed export leaves nothing at the destination; the same command resumes
// from the verified files and ends with the bytes of an uninterrupted run.
TEST(GgufCli, AKilledSplitExportResumesToTheSameBytes) {
  test::TempDir dir;
  const std::string common = " export-gguf " + q(family("target")) + " --type q8_0 --split-max-size 40kB -o ";
  const auto whole = run_rvec(common.substr(1) + q(dir / "a" / "m.gguf") + " -q");
  ASSERT_EQ(whole.exit_code, 0) << whole.output;
  const auto killed = test::run_shell("env RVEC_TEST_KILL_AFTER_SHARDS=2 " + std::string(RVEC_CLI_PATH) + common +
                                      q(dir / "b" / "m.gguf") + " -q");
  EXPECT_NE(killed.exit_code, 0);
  // The partial folder, and the lock file a killed run cannot remove.
  EXPECT_EQ(test::file_names(dir / "b"), (std::set<std::string>{".m.gguf.rvec-lock", ".m.gguf.rvec-partial"}));
  const auto resumed = run_rvec(common.substr(1) + q(dir / "b" / "m.gguf"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("2 verified shard(s) reused"), std::string::npos) << resumed.output;
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir / "a")) {
    ++files;
    EXPECT_EQ(test::read_file(e.path()), test::read_file(dir / "b" / e.path().filename())) << e.path();
  }
  EXPECT_GT(files, 2u);
  EXPECT_FALSE(fs::exists(dir / "b" / ".m.gguf.rvec-partial"));
}

// A merge into two GGUF outputs killed at each step of putting them in
// place (the marker written, the file renamed; the first output, then the
// second) resumes: an output already in place is kept rather than refused,
// and the run ends with the bytes of an uninterrupted one and nothing else
// beside them.
TEST(GgufCli, AMergeOfSeveralOutputsKilledWhilePuttingThemInPlaceResumes) {
  test::TempDir dir;
  const std::string common = " merge --pre " + q(family("pre")) + " --post " + q(family("post")) + " --target " +
                             q(family("target")) + " --method ties --density 0.3 -w 0.5,1 --format gguf --type q8_0 -o ";
  const auto clean = run_rvec(common.substr(1) + q(dir / "clean") + " -q");
  ASSERT_EQ(clean.exit_code, 0) << clean.output;
  for (int step = 1; step <= 4; ++step) {  // 2 outputs x (marker, rename)
    const fs::path out = dir / ("killed" + std::to_string(step));
    const auto killed = test::run_shell("env RVEC_TEST_KILL_WHILE_FINISHING=" + std::to_string(step) + " " +
                                        std::string(RVEC_CLI_PATH) + common + q(out) + " -q; echo exit=$?");
    EXPECT_NE(killed.output.find("exit=137"), std::string::npos) << step << ": " << killed.output;
    const auto resumed = run_rvec(common.substr(1) + q(out));
    ASSERT_EQ(resumed.exit_code, 0) << step << ": " << resumed.output;
    if (step >= 2) EXPECT_NE(resumed.output.find("already complete"), std::string::npos) << step << ": " << resumed.output;
    EXPECT_EQ(test::file_names(out), test::file_names(dir / "clean")) << step;
    for (const char* w : {"w0.5.gguf", "w1.gguf"}) {
      EXPECT_TRUE(test::read_file(out / w) == test::read_file(dir / "clean" / w)) << step << " " << w;
    }
  }
  // Once every output is in place, the same command refuses them again, as before.
  EXPECT_EQ(run_rvec(common.substr(1) + q(dir / "killed4")).exit_code, 2);

  // An --overwrite run of other settings killed after w1's marker was written
  // but before its file replaced the old one: the old w1.gguf (its header
  // the same, as --skip does not show in it) is not taken for the new one.
  const std::string skip = " --skip 'model\\.layers\\.0\\..*'";
  const auto replacing = test::run_shell("env RVEC_TEST_KILL_WHILE_FINISHING=3 " + std::string(RVEC_CLI_PATH) + common +
                                         q(dir / "killed4") + skip + " --overwrite -q; echo exit=$?");
  EXPECT_NE(replacing.output.find("exit=137"), std::string::npos) << replacing.output;
  const auto again = run_rvec(common.substr(1) + q(dir / "killed4") + skip);
  EXPECT_EQ(again.exit_code, 2) << again.output;
  EXPECT_NE(again.output.find("w1.gguf: already exists"), std::string::npos) << again.output;
  EXPECT_TRUE(test::read_file(dir / "killed4" / "w1.gguf") == test::read_file(dir / "clean" / "w1.gguf"));
  ASSERT_EQ(run_rvec(common.substr(1) + q(dir / "killed4") + skip + " --overwrite").exit_code, 0);
  ASSERT_EQ(run_rvec(common.substr(1) + q(dir / "skipped") + skip + " -q").exit_code, 0);
  EXPECT_TRUE(test::read_file(dir / "killed4" / "w1.gguf") == test::read_file(dir / "skipped" / "w1.gguf"));
  EXPECT_FALSE(test::read_file(dir / "skipped" / "w1.gguf") == test::read_file(dir / "clean" / "w1.gguf"));
  EXPECT_EQ(test::file_names(dir / "killed4"), test::file_names(dir / "clean"));
}

TEST(GgufCli, BadRequestsAndBadFilesGetOneClearLine) {
  test::TempDir dir;
  const auto refuses = [](const std::string& args, int code, const std::string& message) {
    const auto r = run_rvec(args);
    EXPECT_EQ(r.exit_code, code) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << args << "\n" << r.output;
  };
  refuses("export-gguf " + q(family("target")) + " -o " + q(dir / "x") + " --type f16", 2, "name it *.gguf");
  refuses("export-gguf " + q(family("target")) + " -o " + q(dir / "x.gguf") + " --type q3_k", 2, "not f32, f16, bf16");
  refuses("merge --pre " + q(family("pre")) + " --post " + q(family("post")) + " --target " + q(family("target")) +
              " -w 1 --format gguf --type f16 --dtype F16 -o " + q(dir / "m.gguf"),
          2, "a GGUF output takes --type");
  export_gguf(family("target"), dir / "t.gguf", "f16");
  refuses("export-gguf " + q(family("target")) + " -o " + q(dir / "t.gguf") + " --type f16", 2, "already exists");

  // An architecture and a pre-tokenizer llama.cpp would not get right are refused.
  fs::copy(family("target"), dir / "odd");
  auto config = nlohmann::json::parse(test::read_file(dir / "odd" / "config.json"));
  config["architectures"] = {"Qwen3ForCausalLM"};
  test::write_file(dir / "odd" / "config.json", config.dump());
  refuses("export-gguf " + q(dir / "odd") + " -o " + q(dir / "odd.gguf") + " --type f16", 2, "Qwen3ForCausalLM");
  config["architectures"] = {"Qwen2ForCausalLM"};
  test::write_file(dir / "odd" / "config.json", config.dump());
  auto tokenizer = nlohmann::json::parse(test::read_file(dir / "odd" / "tokenizer.json"));
  tokenizer["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\s+";
  test::write_file(dir / "odd" / "tokenizer.json", tokenizer.dump());
  refuses("export-gguf " + q(dir / "odd") + " -o " + q(dir / "odd.gguf") + " --type f16", 4, "pre-tokenizer");
  EXPECT_FALSE(fs::exists(dir / "odd.gguf"));

  // A truncated file is refused by inspect, naming the tensor.
  const std::string bytes = test::read_file(dir / "t.gguf");
  test::write_file(dir / "cut.gguf", bytes.substr(0, bytes.size() - 100));
  refuses("inspect " + q(dir / "cut.gguf"), 4, "runs past the end of the file");
}

}  // namespace
}  // namespace rvec
