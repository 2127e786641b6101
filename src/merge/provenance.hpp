// What every output of a job says about where it came from: safetensors
// metadata, rvec_provenance.json, and a Hugging Face style model card.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "io/writer.hpp"
#include "merge/job.hpp"

namespace rvec {

inline constexpr const char* kProvenanceFile = "rvec_provenance.json";
inline constexpr const char* kRecipeFile = "rvec_recipe.yaml";

// Paths and FNV-1a hashes of every shard header and config.json of the inputs.
nlohmann::ordered_json describe_inputs(const JobInputs& inputs);

// The method's merge-wide values by name: words for choices, integers for
// whole-number parameters (a seed: exact up to 2^53), else numbers.
nlohmann::ordered_json param_values_json(const MergeMethod& method, const MethodParams& values);

// The method: its name, formula, merge-wide values (words for choices) and
// every setting as given (gradients, conditions, a weight for every vector).
nlohmann::ordered_json method_json(const JobSpec& spec, const JobPlan& plan);

// The plan's compatibility findings (warnings and notes; errors stop a plan)
// as [{severity, subject, message}].
nlohmann::ordered_json findings_json(const JobPlan& plan);

// Identifies one output of one job: same inputs, weight, rules, dtype and
// sharding give the same fingerprint (used to resume and to reuse outputs).
std::string output_fingerprint(const JobInputs& inputs, const JobSpec& spec, double w);

// __metadata__ written into every shard of an output.
Metadata shard_metadata(const JobSpec& spec, const JobInputs& inputs, double w);

// What a GGUF output records in general.rvec.*: the shard metadata plus the
// inputs' folder names (rvec.inputs.<role>, post_2 for a second vector); an
// export carries over what the exported folder recorded (hf/gguf_export.hpp:
// gguf_provenance_of).
Metadata gguf_provenance(const JobInputs& inputs, const JobSpec& spec, double w);

nlohmann::ordered_json provenance(const JobInputs& inputs, const JobSpec& spec, const JobPlan& plan,
                                  const OutputResult& output, const std::string& fingerprint, const JobResult& job);

std::string model_card(const JobInputs& inputs, const JobSpec& spec, const JobPlan& plan, const OutputResult& output,
                       const JobResult& job);

}  // namespace rvec
