// What `inspect` and `check` say about one model, as JSON (docs/inspect-json.md).
#pragma once

#include <nlohmann/json.hpp>

#include "hf/model_folder.hpp"

namespace rvec::cli {

struct SummaryDetail {
  bool tensors = false;    // the per-tensor list
  bool tokenizer = true;   // parse tokenizer.json for its size (a few MB for real models)
};

nlohmann::ordered_json model_summary(const ModelFolder& model, SummaryDetail detail);

// One line: "Qwen2ForCausalLM, 32.76 B params, BF16, untied".
std::string model_one_line(const nlohmann::ordered_json& summary);

}  // namespace rvec::cli
