#include "merge/recipe.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "base/error.hpp"
#include "merge/method.hpp"
#include "merge/param_setting.hpp"

namespace rvec {
namespace {

void expect_bad(const std::string& yaml, const std::string& needle) {
  try {
    parse_recipe(yaml, "r.yaml");
    FAIL() << "accepted: " << yaml;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).rfind("r.yaml", 0), 0u) << e.what();
  }
}

TEST(Recipe, ParsesAFullMergeRecipe) {
  const auto r = parse_recipe(R"(
kind: merge
pre: a
post: b
target: c
weights: [0.25, 0.5]
output: out
dtype: bf16
max_shard_size: 2GB
rules:
  - match: "lm_head"
    scale: 0
  - layers: 0-3
    scale: 0.5
)",
                              "r.yaml");
  EXPECT_EQ(r.weights, (std::vector<double>{0.25, 0.5}));
  ASSERT_EQ(r.rules.size(), 2u);
  const JobSpec spec = job_spec(r);
  EXPECT_EQ(spec.out_dtype, DType::kBF16);
  EXPECT_EQ(spec.max_shard_bytes, 2'000'000'000u);
  EXPECT_EQ(spec.rules[0].scale(), 0.0);
  EXPECT_TRUE(spec.rules[1].matches("model.layers.3.mlp.up_proj.weight"));
  EXPECT_FALSE(spec.rules[1].matches("model.layers.4.mlp.up_proj.weight"));
}

TEST(Recipe, RoundTripsThroughYaml) {
  Recipe r;
  r.pre = "p";
  r.post = "q";
  r.target = "t";
  r.weights = {0.5, 1.0, 1.25};
  r.output = "o";
  r.rules = {{std::string("norm|embed"), std::nullopt, 0.0}, {std::nullopt, std::string("2-5"), 0.75}};
  const Recipe back = parse_recipe(recipe_yaml(r), "r.yaml");
  EXPECT_EQ(back.weights, r.weights);
  EXPECT_EQ(back.pre, "p");
  ASSERT_EQ(back.rules.size(), 2u);
  EXPECT_EQ(back.rules[0].match, "norm|embed");
  EXPECT_EQ(back.rules[1].layers, "2-5");
  EXPECT_EQ(back.rules[1].scale, 0.75);
}

TEST(Recipe, ErrorsNameFileLineAndField) {
  expect_bad("pre: a\npost: b\ntarget: c\nweights: [0.5]\noutput: o\nwieghts: 1\n", "r.yaml:6: unknown field \"wieghts\"");
  expect_bad("pre: a\npost: b\ntarget: c\noutput: o\n", "field \"weights\" is required");
  expect_bad("pre: a\npost: b\ntarget: c\nweights: [x]\noutput: o\n", "field \"weights\" must be");
  expect_bad("pre: a\npost: b\ntarget: c\nweights: [0.5, .inf]\noutput: o\n", "field \"weights\" must be a list of numbers");
  expect_bad("pre: a\npost: b\ntarget: c\nweights: .nan\noutput: o\n", "field \"weights\" must be a number");
  expect_bad("pre: [a\n", "not valid YAML");
  expect_bad("kind: blend\n", "not merge, apply, extract or export");
  expect_bad("pre: a\npost: b\ntarget: c\nweights: 1\noutput: o\nrules:\n  - match: x\n", "needs \"scale\"");
}

TEST(Recipe, MethodsAndSeveralVectorsRoundTripThroughYaml) {
  const auto r = parse_recipe(R"(
method: ties
params: {density: 0.2, vote: weighted}
target: t
weights: [1]
output: o
vectors:
  - pre: a
    post: b
    weight: 0.5
    density: [0.1, 0.3, 0.9]
  - vector: v
    weight:
      - filter: mlp
        value: 0.5
      - value: [0, 1]
)",
                              "r.yaml");
  ASSERT_EQ(r.vectors.size(), 2u);
  EXPECT_EQ(r.vectors[1].vector, "v");
  const Recipe back = parse_recipe(recipe_yaml(r), "r.yaml");
  EXPECT_EQ(back.method, "ties");
  ASSERT_EQ(back.vectors.size(), 2u);
  EXPECT_EQ(back.vectors[0].pre, "a");
  const MethodParam& density = *find_param(merge_method("ties"), "density");
  const MethodParam weight{"weight", 1, -10, 10};
  EXPECT_DOUBLE_EQ(*back.vectors[0].params.at("density").value_at(density, "x", 0.75), 0.6);
  EXPECT_EQ(*back.vectors[1].params.at("weight").value_at(weight, "model.layers.0.mlp.up_proj.weight", 0), 0.5);
  EXPECT_EQ(*back.vectors[1].params.at("weight").value_at(weight, "model.layers.1.self_attn.q_proj.weight", 1), 1.0);
  EXPECT_EQ(*back.params.at("vote").value_at(*find_param(merge_method("ties"), "vote"), "x", 0), 1.0);
  const JobSpec spec = job_spec(back);
  EXPECT_EQ(spec.method->name(), "ties");
  EXPECT_EQ(spec.vector_params.size(), 2u);
}

TEST(Recipe, MethodErrorsNameTheLine) {
  const std::string head = "target: t\nweights: [1]\noutput: o\n";
  expect_bad(head + "method: tie\npre: a\npost: b\n", "r.yaml:4: unknown merge method \"tie\"");
  expect_bad(head + "method: ties\nparams: {gamma: 0.1}\npre: a\npost: b\n", "r.yaml:5: unknown field \"gamma\" in params");
  expect_bad(head + "method: ties\nvectors:\n  - {pre: a, post: b, vote: weighted}\n",
             "unknown field \"vote\" in a vector (method ties takes: weight, density)");
  expect_bad(head + "pre: a\npost: b\nvectors:\n  - {pre: a, post: b}\n", "give \"vectors\" or pre/post");
  expect_bad(head + "vectors:\n  - {pre: a}\n", "a vector needs \"pre\" and \"post\", or \"vector\"");
  expect_bad(head + "vectors:\n  - {pre: a, post: b, weight: [x, 1]}\n", "a gradient is a list of numbers");
  expect_bad(head + "vectors: []\n", "must be a list of vectors");
  // These were found only while planning, by messages that named no file or line.
  expect_bad(head + "method: ties\nparams: {density: true}\npre: a\npost: b\n",
             "r.yaml:5: field \"density\" takes a number, not \"true\"");
  expect_bad(head + "method: ties\npre: a\npost: b\nparams:\n  density: [0.1,\n    1.5]\n",
             "r.yaml:9: field \"density\" = 1.5 is outside [0, 1]");
  expect_bad(head + "method: ties\nparams: {vote: heavy}\npre: a\npost: b\n",
             "r.yaml:5: field \"vote\" is one of unweighted, weighted, not \"heavy\"");
  expect_bad(head + "method: dare_ties\nparams: {seed: 1.5}\npre: a\npost: b\n",
             "r.yaml:5: field \"seed\" = 1.5 is not a whole number");
  expect_bad(head + "method: ties\nbase: &b {density: 0.3}\nparams: {<<: *b}\npre: a\npost: b\n",
             "r.yaml:6: a YAML merge key (<<) is not supported here");
}

// A seed of 2^53 + 1 became 2^53 without a word, and "010" read as 10
// where mergekit (PyYAML, YAML 1.1) reads octal 8.
TEST(Recipe, NumbersADoubleCannotHoldOrThatReadAsOctalAreRefused) {
  const std::string head = "target: t\nweights: [1]\noutput: o\npre: a\npost: b\n";
  expect_bad(head + "method: dare_ties\nparams: {seed: 9007199254740993}\n",
             "r.yaml:7: field \"seed\": 9007199254740993 is beyond 2^53 = 9007199254740992");
  expect_bad("target: t\nweights: [1]\noutput: o\nmethod: ties\nvectors:\n  - {pre: a, post: b, weight: 010}\n",
             "field \"weight\": \"010\" has a leading zero, which YAML 1.1 (PyYAML, so mergekit) reads as octal");
  expect_bad(head + "method: ties\nparams: {density: [0.1, +010]}\n", "\"+010\" has a leading zero");
  expect_bad(head + "method: dare_ties\nparams: {seed: 9.007199254740993e15}\n", "is beyond 2^53");  // reads as 2^53
  expect_bad(head + "method: dare_ties\nparams: {seed: 1e17}\n", "is beyond 2^53");
  expect_bad("target: t\nweights: [1, 010]\noutput: o\npre: a\npost: b\n", "r.yaml:2: field \"weights\": \"010\" has a leading zero");
  expect_bad("target: t\nweights: [1e39]\noutput: o\npre: a\npost: b\n", "r.yaml:2: field \"weights\": w = 1e+39 is outside");
  const auto r = parse_recipe(head + "method: dare_ties\nparams: {seed: 9007199254740992, density: 0.5}\n", "r.yaml");
  EXPECT_EQ(job_spec(r).method_params.at("seed").value_at(*find_param(merge_method("dare_ties"), "seed"), "x", 0),
            9007199254740992.0);
}

// PyYAML (so mergekit) reads "+0.5" and "00.5" as 0.5; rvec took them for
// words and refused them as parameter values. ("+.5" and "0.5e0" are strings
// to PyYAML, which mergekit's pydantic turns into 0.5 too.)
TEST(Recipe, NumbersWithAPlusOrALeadingZeroBeforeThePointAreNumbers) {
  const std::string head = "target: t\nweights: [1]\noutput: o\npre: a\npost: b\nmethod: ties\n";
  const MergeMethod& ties = merge_method("ties");
  for (const char* written : {"+0.5", "00.5", "+.5", "0.5e0"}) {
    SCOPED_TRACE(written);
    const auto r = parse_recipe(head + fmt::format("params: {{density: {}}}\n", written), "r.yaml");
    EXPECT_EQ(job_spec(r).method_params.at("density").value_at(*find_param(ties, "density"), "x", 0), 0.5);
  }
  for (const char* word : {"+-0.5", "++0.5", "+", "0x10", "1_000"}) {
    SCOPED_TRACE(word);
    EXPECT_FALSE(read_scalar_text(word).number.has_value());
  }
}

TEST(ParamAssignment, IsRefusedWhenRepeatedOrNotExact) {
  ParamSettings params;
  add_param_assignment(params, "vote=weighted");
  EXPECT_THROW(add_param_assignment(params, "vote=unweighted"), Error);
  EXPECT_THROW(add_param_assignment(params, "seed=9007199254740993"), Error);
  EXPECT_THROW(add_param_assignment(params, "density=010"), Error);
  add_param_assignment(params, "density=0.5");
  add_param_assignment(params, "seed=-0");
  EXPECT_EQ(params.size(), 3u);
}

TEST(Recipe, GgufOutputNeedsItsTypeAndRoundTrips) {
  const std::string merge = "pre: a\npost: b\ntarget: c\nweights: [1]\noutput: o.gguf\n";
  const auto gguf = job_spec(parse_recipe(merge + "format: gguf\ntype: Q4_K_M\nsplit_max_size: 50GB\n", "r.yaml"));
  EXPECT_EQ(gguf.format, OutputFormat::kGguf);
  EXPECT_EQ(gguf.gguf_type, GgufFileType::kQ4_K_M);
  EXPECT_EQ(gguf.gguf_split_bytes, 50'000'000'000u);
  const Recipe exported = parse_recipe("kind: export\ntarget: c\noutput: c.gguf\ntype: q8_0\n", "r.yaml");
  EXPECT_EQ(job_spec(exported).format, OutputFormat::kGguf);
  EXPECT_EQ(recipe_yaml(exported), "kind: export\ntarget: c\noutput: c.gguf\nmax_shard_size: 5GB\ntype: q8_0\n");
  const auto usage_error = [](const std::string& text, const std::string& needle) {
    try {
      job_spec(parse_recipe(text, "r.yaml"));
      ADD_FAILURE() << "accepted: " << text;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kUsage);
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  usage_error(merge + "format: gguf\n", "needs its type");
  usage_error(merge + "format: gguf\ntype: q2_k\n", "is not f32, f16, bf16, q8_0 or q4_k_m");
  usage_error(merge + "type: q8_0\n", "are for GGUF output");
  usage_error(merge + "format: onnx\n", "not safetensors or gguf");
}

TEST(Recipe, RulesAndWeightsFromTheCommandLine) {
  EXPECT_EQ(parse_weight_list("0.25,0.5,1"), (std::vector<double>{0.25, 0.5, 1.0}));
  EXPECT_THROW(parse_weight_list("0.5,,1"), Error);
  EXPECT_THROW(parse_weight_list("half"), Error);
  EXPECT_THROW(TensorRule::skip("("), Error);
  EXPECT_THROW(TensorRule::scaled("mlp"), Error);
  EXPECT_THROW(TensorRule::layers("3-1=0.5"), Error);
  EXPECT_TRUE(TensorRule::skip("^lm_head").matches("lm_head.weight"));
  EXPECT_FALSE(TensorRule::skip("^lm_head").matches("x.lm_head.weight"));
  EXPECT_EQ(layer_index("model.layers.17.mlp.up_proj.weight"), 17u);
  EXPECT_FALSE(layer_index("model.norm.weight"));
}

}  // namespace
}  // namespace rvec
