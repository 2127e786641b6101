#include "hf/tensor_names.hpp"

#include <gtest/gtest.h>

#include "hf/shapes.hpp"

namespace rvec {
namespace {

TEST(TensorNames, KindsOfTheQwen2Tensors) {
  EXPECT_EQ(module_kind_name(module_kind("model.embed_tokens.weight")), "embeddings");
  EXPECT_EQ(module_kind_name(module_kind("lm_head.weight")), "lm_head");
  EXPECT_EQ(module_kind_name(module_kind("model.norm.weight")), "norms");
  EXPECT_EQ(module_kind_name(module_kind("model.layers.3.self_attn.q_proj.bias")), "attn_q");
  EXPECT_EQ(module_kind_name(module_kind("model.layers.3.self_attn.k_proj.weight")), "attn_k");
  EXPECT_EQ(module_kind_name(module_kind("model.layers.3.self_attn.v_proj.weight")), "attn_v");
  EXPECT_EQ(module_kind_name(module_kind("model.layers.3.self_attn.o_proj.weight")), "attn_o");
  EXPECT_EQ(module_kind_name(module_kind("model.layers.3.mlp.down_proj.weight")), "mlp");
  EXPECT_EQ(module_kind_name(module_kind("model.layers.3.post_attention_layernorm.weight")), "norms");
}

TEST(TensorNames, NamesOutsideTheTableAreKindedByTheirParts) {
  EXPECT_EQ(module_kind_name(module_kind("model.layers.0.self_attn.q_norm.weight")), "norms");  // Qwen3
  EXPECT_EQ(module_kind_name(module_kind("model.layers.0.mlp.experts.0.w1")), "mlp");
  EXPECT_EQ(module_kind_name(module_kind("something.else")), "other");
}

TEST(TensorNames, LayerIndex) {
  EXPECT_EQ(layer_index("model.layers.17.mlp.up_proj.weight"), 17u);
  EXPECT_EQ(layer_index(layer_tensor_name(5, "input_layernorm.weight")), 5u);
  EXPECT_FALSE(layer_index("model.layers.17"));
  EXPECT_FALSE(layer_index("model.layers..mlp"));
  EXPECT_FALSE(layer_index("model.layers.x.mlp"));
  EXPECT_FALSE(layer_index("model.embed_tokens.weight"));
  EXPECT_FALSE(layer_index("model.layers.99999999999999999999999.mlp"));
}

TEST(TensorNames, GeneratedShapesFollowTheTable) {
  const Qwen2Shape shape = qwen2_shape("tiny");
  const auto tensors = qwen2_tensors(shape, DType::kBF16);
  ASSERT_EQ(tensors.size(), 2 + shape.layers * kLayerTensors.size() + (shape.tied ? 0 : 1));
  EXPECT_EQ(tensors[1].name, "model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(tensors[1].shape, (std::vector<uint64_t>{shape.heads * shape.head_dim, shape.hidden}));
  EXPECT_EQ(tensors[10].name, "model.layers.0.mlp.down_proj.weight");
  EXPECT_EQ(tensors[10].shape, (std::vector<uint64_t>{shape.hidden, shape.intermediate}));
}

}  // namespace
}  // namespace rvec
