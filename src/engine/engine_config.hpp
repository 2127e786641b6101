// What the built-in engine accepts from a model folder: config.json (and
// generation_config.json) checked field by field and against the tensors.
//
// Every field the engine's arithmetic depends on is validated, and a value
// the engine does not implement is refused with one line naming the file,
// the field and the value (hidden_act "gelu", rms_norm_eps -1, a rope_scaling
// type, sliding-window attention, ...), never silently run as something else.
// The sizes the config states (layers, hidden size, heads, intermediate size,
// vocabulary) are compared with the tensors' shapes, each with its own line.
// docs/engine.md lists what is accepted and refused.
#pragma once

#include <string>

#include "hf/model_folder.hpp"
#include "engine/transformer.hpp"

namespace rvec {

// The engine's view of `model` (opened from `folder`); throws a bad-input
// Error naming config.json and the field on anything it cannot run exactly.
TransformerConfig read_engine_config(const ModelFolder& model, const std::string& folder);

// Whether the engine may leave `tensor_name` unread: buffers some checkpoints
// store that Hugging Face recomputes (rotary_emb.inv_freq). Any other tensor
// the engine does not read means config.json does not describe the checkpoint.
bool engine_may_ignore(const std::string& tensor_name);

}  // namespace rvec
