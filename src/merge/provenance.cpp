#include "merge/provenance.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include "base/hash.hpp"
#include "base/json.hpp"

namespace rvec {
namespace {

using ojson = nlohmann::ordered_json;

ojson describe_model(const ModelFolder& model) {
  ojson shards = ojson::array();
  for (const auto& shard : model.shards()) {
    shards.push_back({{"file", std::filesystem::path(shard->path()).filename().string()},
                      {"bytes", shard->file_size()},
                      {"modified_ns", shard->modified_ns()},
                      {"header_fnv1a64", hex64(shard->header().json_hash)}});
  }
  const auto config = std::filesystem::path(model.path()) / "config.json";
  std::error_code ec;
  ojson config_hash = nullptr;
  if (model.is_folder() && std::filesystem::is_regular_file(config, ec)) {
    config_hash = hex64(fnv1a64(read_small_file(config.string(), 16'000'000)));
  }
  return {{"path", std::filesystem::absolute(model.path()).lexically_normal().string()},
          {"architecture", model.config() ? ojson(model.config()->architecture()) : ojson(nullptr)},
          {"config_fnv1a64", config_hash},
          {"shards", shards}};
}

// Each vector's own settings (weight, density, ...), when any were given.
ojson vector_settings_json(const JobSpec& spec) {
  ojson out = ojson::array();
  for (const auto& settings : spec.vector_params) out.push_back(settings_json(settings));
  return out;
}

ojson rules_json(const JobSpec& spec) {
  ojson rules = ojson::array();
  for (const auto& r : spec.rules) rules.push_back(r.describe());
  return rules;
}

std::filesystem::path folder_path(const ModelFolder& model) {
  std::filesystem::path path = std::filesystem::path(model.path()).lexically_normal();
  return path.has_filename() ? path : path.parent_path();  // "post/" is "post"
}

// The model card's names of the inputs: each folder's name, or where two
// folders share one (fam/post, fam2/post), the name with its parent's.
class InputNames {
 public:
  explicit InputNames(const JobInputs& inputs) {
    const auto add = [this](const ModelFolder* m) {
      if (m) paths_[folder_path(*m).filename().string()].insert(folder_path(*m).string());
    };
    add(inputs.target);
    for (const auto& v : inputs.vectors) add(v.pre), add(v.post);
  }

  std::string operator()(const ModelFolder* model) const {
    if (!model) return "";
    const std::filesystem::path path = folder_path(*model);
    const std::string name = path.filename().string();
    if (paths_.at(name).size() == 1 || !path.has_parent_path()) return name;
    return (path.parent_path().filename() / name).string();
  }

 private:
  std::map<std::string, std::set<std::string>> paths_;  // folder name -> the paths of that name
};

// Norm of the vector per module kind, its share of ||v||^2, and its size
// relative to pre (absent for apply, where pre is not read).
ojson vector_stats_json(const JobResult& job, bool relative) {
  if (!job.vector_stats_complete) return nullptr;
  double total = 0;
  for (const auto& [kind, s] : job.vector_by_kind) total += s.a_sq;
  ojson out = ojson::object();
  for (const auto& [kind, s] : job.vector_by_kind) {
    out[kind] = {{"norm", std::sqrt(s.a_sq)}, {"share", total > 0 ? s.a_sq / total : 0.0}};
    if (relative) out[kind]["relative_to_pre"] = s.base_sq > 0 ? std::sqrt(s.a_sq / s.base_sq) : 0.0;
  }
  return out;
}

std::string vector_stats_table(const JobResult& job, bool relative) {
  if (!job.vector_stats_complete) {
    return "Not computed: this output was finished from an interrupted run (see `rvec stats`).\n";
  }
  double total = 0;
  for (const auto& [kind, s] : job.vector_by_kind) total += s.a_sq;
  std::string table = relative ? "| module | norm of v | share of norm² | norm of v / norm of pre |\n|---|---|---|---|\n"
                               : "| module | norm of v | share of norm² |\n|---|---|---|\n";
  for (const auto& [kind, s] : job.vector_by_kind) {
    table += fmt::format("| {} | {:.5g} | {:.1f} % |", kind, std::sqrt(s.a_sq), total > 0 ? 100 * s.a_sq / total : 0.0);
    if (relative) table += fmt::format(" {:.4g} |", s.base_sq > 0 ? std::sqrt(s.a_sq / s.base_sq) : 0.0);
    table += "\n";
  }
  return table + "\nOver the tensors that received the vector; `rvec stats` gives per-layer norms and sparsity.\n";
}

}  // namespace

ojson param_values_json(const MergeMethod& method, const MethodParams& values) {
  ojson params = ojson::object();
  for (const auto& p : method.params()) {
    const double value = values.at(p.name);
    if (!p.choices.empty()) params[p.name] = param_text(p, value);
    else if (p.whole) params[p.name] = static_cast<int64_t>(value);
    else params[p.name] = value;
  }
  return params;
}

ojson method_json(const JobSpec& spec, const JobPlan& plan) {
  const MergeMethod& method = job_method(spec);
  ojson params = param_values_json(method, plan.merge_params);
  for (const auto& [name, setting] : spec.method_params) {  // gradients, conditions, and every vector's weight
    if (!setting.is_constant() || !params.contains(name)) params[name] = setting.to_json();
  }
  return {{"name", method.name()}, {"formula", method.formula()}, {"params", params}};
}

ojson findings_json(const JobPlan& plan) {
  ojson out = ojson::array();
  for (const auto& f : plan.compatibility.findings) {
    out.push_back({{"severity", std::string(severity_name(f.severity))}, {"subject", f.subject}, {"message", f.message}});
  }
  return out;
}

ojson describe_inputs(const JobInputs& inputs) {
  ojson out = ojson::object();
  const auto describe_vector = [](const VectorInput& v, ojson& into) {
    if (v.pre) into["pre"] = describe_model(*v.pre);
    into[v.pre ? "post" : "vector"] = describe_model(*v.post);
  };
  if (inputs.vectors.size() == 1) {
    describe_vector(inputs.vectors.front(), out);
  } else {
    out["vectors"] = ojson::array();
    for (const auto& v : inputs.vectors) {
      ojson one = ojson::object();
      describe_vector(v, one);
      out["vectors"].push_back(one);
    }
  }
  if (inputs.target) out["target"] = describe_model(*inputs.target);
  return out;
}

namespace {

// Settings as the fingerprints of stop 32 and before wrote them, every number
// a double (7.0), so the outputs they identify are still recognised.
ojson with_numbers_as_doubles(ojson value) {
  if (value.is_number()) return value.get<double>();
  if (value.is_structured()) {
    for (auto& item : value) item = with_numbers_as_doubles(std::move(item));
  }
  return value;
}

}  // namespace

std::string output_fingerprint(const JobInputs& inputs, const JobSpec& spec, double w) {
  ojson key = {{"rvec", RVEC_VERSION},
               {"kind", job_kind_name(spec.kind)},
               {"w", w},
               {"rules", rules_json(spec)},
               {"dtype", spec.out_dtype ? std::string(dtype_name(*spec.out_dtype)) : "default"},
               {"max_shard_bytes", spec.max_shard_bytes},
               {"inputs", describe_inputs(inputs)}};
  // Plain task arithmetic keys as it did before methods existed, so its earlier outputs are still recognised.
  if (!is_plain_task_arithmetic(spec, inputs)) {
    key["method"] = {{"name", job_method(spec).name()},
                     {"params", with_numbers_as_doubles(settings_json(spec.method_params))}};
    key["vectors"] = with_numbers_as_doubles(vector_settings_json(spec));
  }
  if (spec.format == OutputFormat::kGguf) {
    key["format"] = {{"gguf", gguf_file_type_name(spec.gguf_type)}, {"split_bytes", spec.gguf_split_bytes}};
  }
  return hex64(fnv1a64(key.dump()));
}

Metadata shard_metadata(const JobSpec& spec, const JobInputs& inputs, double w) {
  Metadata m = {{"rvec.version", RVEC_VERSION},
                {"rvec.kind", std::string(job_kind_info(spec.kind).metadata_kind)},
                {"rvec.formula", job_formula(spec, inputs)}};
  if (job_kind_info(spec.kind).adds_to_target) m["rvec.w"] = fmt::format("{}", w);
  // The method and every setting as given (weights, densities, seeds,
  // gradients), so a shard or a GGUF file alone says how it was made.
  if (!is_plain_task_arithmetic(spec, inputs)) {
    m["rvec.method"] = ojson{{"name", job_method(spec).name()},
                             {"params", settings_json(spec.method_params)},
                             {"vectors", vector_settings_json(spec)}}
                           .dump();
  }
  return m;
}

Metadata gguf_provenance(const JobInputs& inputs, const JobSpec& spec, double w) {
  if (spec.kind == JobKind::kExport) return gguf_provenance_of(*inputs.target);
  Metadata m = shard_metadata(spec, inputs, w);
  const auto record = [&m](std::string role, const ModelFolder& model) {
    std::ranges::replace(role, ' ', '_');
    m["rvec.inputs." + role] = gguf_model_name(model.path());
  };
  for (size_t i = 0; i < inputs.vectors.size(); ++i) {
    const VectorInput& v = inputs.vectors[i];
    if (v.pre) record(vector_role(inputs, i, "pre"), *v.pre);
    record(vector_role(inputs, i, v.pre ? "post" : "vector"), *v.post);
  }
  if (inputs.target) record("target", *inputs.target);
  return m;
}

ojson provenance(const JobInputs& inputs, const JobSpec& spec, const JobPlan& plan, const OutputResult& output,
                 const std::string& fingerprint, const JobResult& job) {
  size_t combined = 0, copied = 0;
  ojson notes = ojson::array();
  for (const auto& t : plan.tasks) {
    (t.copied() ? copied : combined) += 1;
    if (!t.note.empty()) notes.push_back({{"tensor", t.name}, {"note", t.note}});
  }
  ojson nonfinite = ojson::array();
  for (const auto& [tensor, count] : output.nonfinite) nonfinite.push_back({{"tensor", tensor}, {"count", count}});
  ojson out = {{"rvec_version", RVEC_VERSION},
               {"kind", job_kind_info(spec.kind).metadata_kind},
               {"formula", job_formula(spec, inputs)},
               {"method", method_json(spec, plan)},
               {"vectors", vector_settings_json(spec)},
               {"arithmetic", "f32 per element, rounded once to the output dtype (nearest even)"},
               {"fingerprint", fingerprint},
               {"inputs", describe_inputs(inputs)},
               {"rules", rules_json(spec)},
               {"dtype", spec.out_dtype ? ojson(std::string(dtype_name(*spec.out_dtype))) : ojson("as target")},
               {"findings", findings_json(plan)},
               {"tensors", {{"combined", combined}, {"copied", copied}, {"notes", notes}}},
               {"new_nonfinite_values", nonfinite},
               {"vector_stats", vector_stats_json(job, inputs.vectors.front().pre != nullptr)},
               {"command", spec.command_line},
               {"recipe", spec.recipe_text.empty() ? ojson(nullptr) : ojson(spec.recipe_text)}};
  if (job_kind_info(spec.kind).adds_to_target) out["w"] = output.w;
  return out;
}

std::string model_card(const JobInputs& inputs, const JobSpec& spec, const JobPlan& plan, const OutputResult& output,
                       const JobResult& job) {
  const InputNames name_of(inputs);
  std::vector<std::string> bases;
  const auto add_base = [&](const ModelFolder* m) {
    if (m && std::ranges::find(bases, name_of(m)) == bases.end()) bases.push_back(name_of(m));
  };
  add_base(inputs.target);
  for (const auto& v : inputs.vectors) add_base(v.post), add_base(v.pre);
  const auto vector_text = [&](const VectorInput& v) {
    return v.pre ? fmt::format("`{}` − `{}`", name_of(v.post), name_of(v.pre)) : fmt::format("`{}`", name_of(v.post));
  };
  const MergeMethod& method = job_method(spec);
  const VectorInput& first = inputs.vectors.front();
  std::string what;
  const JobKindInfo& kind = job_kind_info(spec.kind);
  if (!kind.adds_to_target) {
    what = fmt::format("a reasoning vector: {}, stored as {}. It is not a model; add it to a model of the "
                       "same architecture with `rvec apply`.",
                       vector_text(first), plan.tasks.empty() ? "?" : std::string(dtype_name(plan.tasks.front().out_dtype)));
  } else if (inputs.vectors.size() > 1 || method.name() != kDefaultMergeMethod) {
    std::vector<std::string> vectors;
    for (const auto& v : inputs.vectors) vectors.push_back(vector_text(v));
    what = fmt::format("`{}` + w · {}({}) with **w = {}**: {} vector(s) combined by {} and added to `{}`.",
                       name_of(inputs.target), method.name(), fmt::join(vectors, ", "), output.w, vectors.size(),
                       method.name(), name_of(inputs.target));
  } else if (first.pre) {
    what = fmt::format("`{}` + w · (`{}` − `{}`) with **w = {}**: the reasoning vector of `{}` over `{}` added to `{}`.",
                       name_of(inputs.target), name_of(first.post), name_of(first.pre), output.w, name_of(first.post),
                       name_of(first.pre), name_of(inputs.target));
  } else {
    what = fmt::format("`{}` + w · `{}` with **w = {}** (a saved reasoning vector).", name_of(inputs.target),
                       name_of(first.post), output.w);
  }
  std::string params;
  for (const auto& p : method.params()) params += fmt::format(" {} {};", p.name, param_text(p, plan.merge_params.at(p.name)));
  std::string per_vector;
  for (size_t i = 0; i < spec.vector_params.size(); ++i) {
    per_vector += fmt::format("  - vector {}: {}\n", i + 1, settings_json(spec.vector_params[i]).dump());
  }
  for (const auto& [name, setting] : spec.method_params) {
    if (!setting.is_constant() || !find_param(method, name)) {
      per_vector += fmt::format("  - every vector: {} = {}\n", name, setting.to_json().dump());
    }
  }
  size_t copied = 0;
  for (const auto& t : plan.tasks) copied += t.copied();
  std::string rules;
  for (const auto& r : spec.rules) rules += fmt::format("- {}\n", r.describe());
  if (rules.empty()) rules = "- none: every floating tensor receives the full w\n";
  std::string base_list;
  for (const auto& b : bases) base_list += fmt::format("- {}\n", b);
  std::string warnings;
  for (const auto& f : plan.compatibility.findings) {
    if (f.severity == Severity::kWarning) warnings += fmt::format("  - {}: {}\n", f.subject, f.message);
  }
  if (!warnings.empty()) warnings = "- warnings:\n" + warnings;
  return fmt::format(
      "---\nbase_model:\n{}library_name: transformers\ntags:\n- merge\n- rvec\n- reasoning-vector\n---\n\n"
      "# {}\n\nThis is {}\n\nMade with rvec {}, streaming the inputs block by block: every element computed in f32 from the inputs' "
      "values and rounded once to the output dtype (round to nearest even).\n\n"
      "## Recipe\n\n- formula: `{}`\n- method: `{}`, δ = `{}`;{}\n{}- tensors: {} ({} copied unchanged from the "
      "target)\n- tensor rules:\n{}{}\n"
      "Command:\n\n```\n{}\n```\n\n## Vector statistics\n\n{}\nFull provenance (input header hashes, rules, notes): "
      "`{}`.\n",
      base_list, output.path.filename().string(), what, RVEC_VERSION, job_formula(spec, inputs), method.name(),
      method.formula(), params, per_vector, plan.tasks.size(), copied, rules, warnings, spec.command_line,
      vector_stats_table(job, first.pre != nullptr), kProvenanceFile);
}

}  // namespace rvec
