// config.json against what the engine implements and against the tensors:
// every refusal is one line naming the file, the field and the value.
#include "engine/transformer.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "base/error.hpp"
#include "base/json.hpp"
#include "base/thread_pool.hpp"
#include "engine/tiny_model.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

using nlohmann::json;
using test::TempDir;

// The tiny model (hidden 32, 2 layers, 4 heads of 8, 2 KV heads, intermediate
// 48, vocab 96, untied) with `changes` merged into its config.json; the error
// Transformer::load gives, with the folder written as MODEL ("" if it loads).
std::string load_error(const json& changes, const test::TinyModelSpec& spec = {}) {
  TempDir dir;
  test::write_tiny_model(dir.path(), spec);
  auto config = read_json_file((dir / "config.json").string());
  config.merge_patch(changes);
  test::write_file(dir / "config.json", config.dump());
  ThreadPool pool(1);
  try {
    Transformer::load(dir.path().string(), pool);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
    std::string message = e.what();
    if (message.starts_with(dir.path().string())) message.replace(0, dir.path().string().size(), "MODEL");
    return message;
  }
  return "";
}

TEST(EngineConfig, RefusesWhatTheEngineDoesNotImplement) {
  const std::vector<std::pair<json, std::string>> cases = {
      {{{"hidden_act", "gelu"}},
       "MODEL/config.json: hidden_act \"gelu\" is not supported by the built-in engine (it implements silu)"},
      {{{"hidden_act", 7}}, "MODEL/config.json: field \"hidden_act\" must be a string, found 7"},
      {{{"rms_norm_eps", -1}},
       "MODEL/config.json: rms_norm_eps is -1; the engine needs a finite number above 0 (in float32)"},
      {{{"rms_norm_eps", 0}},
       "MODEL/config.json: rms_norm_eps is 0; the engine needs a finite number above 0 (in float32)"},
      {{{"rms_norm_eps", 1e-50}},
       "MODEL/config.json: rms_norm_eps is 1e-50; the engine needs a finite number above 0 (in float32)"},
      {{{"rope_theta", 0}},
       "MODEL/config.json: rope_theta is 0; the engine needs a finite number above 0 (in float32)"},
      {{{"rope_theta", 1e39}},
       "MODEL/config.json: rope_theta is 1e+39; the engine needs a finite number above 0 (in float32)"},
      {{{"rope_scaling", {{"rope_type", "yarn"}, {"factor", 4}}}},
       "MODEL/config.json: rope_scaling of type \"yarn\" is not supported by the built-in engine (only default RoPE)"},
      {{{"rope_parameters", {{"rope_type", "llama3"}, {"rope_theta", 5e5}}}},
       "MODEL/config.json: rope_parameters of type \"llama3\" is not supported by the built-in engine (only default "
       "RoPE)"},
      {{{"rope_scaling", "linear"}}, "MODEL/config.json: field \"rope_scaling\" must be an object, found \"linear\""},
      {{{"use_sliding_window", true}},
       "MODEL/config.json: use_sliding_window is true; the built-in engine has no sliding-window attention"},
      {{{"max_position_embeddings", 0}}, "MODEL/config.json: max_position_embeddings is 0"},
      {{{"head_dim", 0}}, "MODEL/config.json: head_dim is 0; RoPE needs an even number above 0"},
      {{{"vocab_size", 1ull << 31}},
       "MODEL/config.json: vocab_size 2147483648 is more than the engine's token ids reach (2^31 - 1)"},
      {{{"tie_word_embeddings", true}},
       "MODEL/config.json: tie_word_embeddings is true but the checkpoint has its own lm_head.weight (Hugging Face "
       "would "
       "ignore it); set it to false or remove the tensor"},
      {{{"eos_token_id", -1}},
       "MODEL/config.json: field \"eos_token_id\" must be a token id or a list of token ids, found -1"},
      {{{"bos_token_id", "<s>"}},
       "MODEL/config.json: field \"bos_token_id\" must be a token id or a list of token ids, found \"<s>\""},
  };
  for (const auto& [changes, expected] : cases) EXPECT_EQ(load_error(changes), expected) << changes.dump();
}

TEST(EngineConfig, SizesAreCheckedAgainstTheTensorsOneFieldAtATime) {
  const std::vector<std::pair<json, std::string>> cases = {
      {{{"num_hidden_layers", 1}},
       "MODEL/config.json: num_hidden_layers is 1 but the checkpoint has more layers (model.layers.1.*)"},
      {{{"num_hidden_layers", 3}},
       "MODEL/config.json: num_hidden_layers is 3 but the checkpoint has no model.layers.2.*"},
      {{{"hidden_size", 64}, {"head_dim", 8}},
       "MODEL/config.json: hidden_size is 64 but model.embed_tokens.weight has 32 columns"},
      {{{"vocab_size", 100}}, "MODEL/config.json: vocab_size is 100 but model.embed_tokens.weight has 96 rows"},
      {{{"head_dim", 16}},
       "MODEL/config.json: num_attention_heads 4 × head_dim 16 is 64 but model.layers.0.self_attn.q_proj.weight has 32 "
       "rows"},
      {{{"num_key_value_heads", 4}},
       "MODEL/config.json: num_key_value_heads 4 × head_dim 8 is 32 but model.layers.0.self_attn.k_proj.weight has 16 "
       "rows"},
      {{{"intermediate_size", 50}},
       "MODEL/config.json: intermediate_size is 50 but model.layers.0.mlp.gate_proj.weight has 48 rows"},
  };
  for (const auto& [changes, expected] : cases) EXPECT_EQ(load_error(changes), expected) << changes.dump();
}

TEST(EngineConfig, AWeightTheEngineWouldIgnoreIsRefused) {
  test::TinyModelSpec spec;
  spec.o_proj_bias = true;
  EXPECT_EQ(
      load_error(json::object(), spec),
      "MODEL: tensor model.layers.0.self_attn.o_proj.bias is not used by the built-in engine's Qwen2ForCausalLM as "
      "config.json describes it; refusing to run without it");
}

TEST(EngineConfig, StopIdsBeyondTheVocabularyAreDroppedNotWrapped) {
  TempDir dir;
  test::write_tiny_model(dir.path(), {});
  auto config = read_json_file((dir / "config.json").string());
  config["eos_token_id"] = {4294967298ull, 95, 96, 151645};  // 4294967298 would wrap to 2 as int32
  config["bos_token_id"] = 4294967297ull;
  test::write_file(dir / "config.json", config.dump());
  test::write_file(dir / "generation_config.json", R"({"eos_token_id": [7, 95]})");
  ThreadPool pool(1);
  const auto engine = Transformer::load(dir.path().string(), pool);
  EXPECT_EQ(engine->config().eos_ids, (std::vector<TokenId>{95, 7}));
  EXPECT_FALSE(engine->config().bos_id.has_value());
}

TEST(EngineConfig, CliRefusesAnUnsupportedActivationWithOneLine) {
  TempDir dir;
  test::write_tiny_model(dir.path(), {});
  auto config = read_json_file((dir / "config.json").string());
  config["hidden_act"] = "gelu";
  test::write_file(dir / "config.json", config.dump());
  const auto r = test::run_rvec("generate " + dir.path().string() + " --ids 1 -n 2");
  EXPECT_EQ(r.exit_code, 4) << r.output;
  EXPECT_EQ(r.output, "rvec: error: " + (dir / "config.json").string() +
                          ": hidden_act \"gelu\" is not supported by the built-in engine (it implements silu)\n");
}

}  // namespace
}  // namespace rvec
