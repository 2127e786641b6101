#include "merge/mergekit.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <filesystem>
#include <map>
#include <optional>

#include "base/error.hpp"
#include "base/yaml_reader.hpp"

namespace rvec {
namespace fs = std::filesystem;
namespace {

// A mergekit method rvec runs, with mergekit's defaults for it.
struct MergekitMethod {
  std::string_view name;
  const char* rescale;  // rescale: false/true as rvec words (null: the method has no rescale)
  bool normalize;       // mergekit's default
  bool gamma;           // takes gamma
  bool votes;           // elects signs (rvec: vote: weighted, as mergekit votes)
};

constexpr MergekitMethod kMethods[] = {
    {"task_arithmetic", nullptr, false, false, false}, {"ties", "none", true, false, true},
    {"dare_linear", "l1", false, false, false},        {"dare_ties", "l1", false, false, true},
    {"breadcrumbs", "none", false, true, false},
};

// Fields of mergekit configs that rvec does not do, with what to do instead.
constexpr std::pair<const char*, const char*> kUnsupported[] = {
    {"slices", "rvec merges whole models; list them under models"},
    {"modules", "rvec merges whole models; list them under models"},
    {"tokenizer", "the output keeps the base model's tokenizer"},
    {"chat_template", "the output keeps the base model's chat template"},
};

const MergekitMethod& read_method(const YamlReader& y, const YAML::Node& root) {
  if (!root["merge_method"]) bad_input("a mergekit config needs merge_method");
  const auto name = y.scalar<std::string>(root["merge_method"], "merge_method", "a method name");
  for (const auto& m : kMethods) {
    if (m.name == name) return m;
  }
  std::vector<std::string_view> names;
  for (const auto& m : kMethods) names.push_back(m.name);
  y.error(root["merge_method"],
          fmt::format("merge_method \"{}\" is not supported by rvec (supported: {})", name, fmt::join(names, ", ")));
}

std::string read_model(const YamlReader& y, const YAML::Node& node, const char* field) {
  const auto model = y.scalar<std::string>(node, field, "a model folder");
  if (model.empty()) y.error(node, fmt::format("field \"{}\" is empty", field));
  if (model.find('+') != std::string::npos) {
    y.error(node, fmt::format("field \"{}\": LoRA references (model+lora) are not supported; merge the LoRA first", field));
  }
  return model;
}

// The names mergekit's dtype_from_name (common.py) takes, "torch." prefix and all.
std::optional<std::string> rvec_dtype(std::string_view torch) {
  if (torch.starts_with("torch.")) torch.remove_prefix(6);
  if (torch == "bfloat16") return "BF16";
  if (torch == "float16") return "F16";
  if (torch == "float32") return "F32";
  return std::nullopt;
}

// mergekit's optional fields are None when written empty (`chat_template:`):
// absent, as pydantic reads them. Other keys stay, to be checked.
void drop_empty_fields(YAML::Node& map) {
  constexpr const char* kOptional[] = {"parameters", "dtype",     "out_dtype", "tokenizer_source", "tokenizer",
                                       "chat_template", "slices", "modules"};
  for (const char* field : kOptional) {
    if (map[field] && map[field].IsNull()) map.remove(field);
  }
}

// A per-model parameter's setting (weight, density, gamma), read as the
// method's parameter of that name; one the method does not take is refused.
ParamSetting read_model_param(const YamlReader& y, const YAML::Node& key, const YAML::Node& value,
                              const MergekitMethod& method) {
  const auto name = key.as<std::string>();
  const MethodParam* param = find_setting_param(merge_method(method.name), name);
  if (!param) y.error(key, fmt::format("parameter \"{}\" is not supported for {} by rvec", name, method.name));
  return read_param_setting(y, value, *param);
}

// The merge-wide `parameters:` into the recipe.
void read_global_parameters(const YamlReader& y, const YAML::Node& params, const MergekitMethod& method, Recipe& r) {
  if (!params.IsMap()) y.error(params, "field \"parameters\" must be a mapping");
  for (const auto& entry : params) {
    const auto name = entry.first.as<std::string>();
    const YAML::Node& value = entry.second;
    if (name == "weight" || name == "density" || (name == "gamma" && method.gamma)) {
      r.params.insert_or_assign(name, read_model_param(y, entry.first, value, method));
    } else if (name == "normalize") {
      r.params.insert_or_assign("normalize", ParamSetting::word(y.scalar<bool>(value, "normalize", "true or false") ? "true" : "false"));
    } else if (name == "rescale") {
      const bool rescale = y.scalar<bool>(value, "rescale", "true or false");
      if (method.rescale) r.params.insert_or_assign("rescale", ParamSetting::word(rescale ? "l1" : "none"));
    } else if (name == "int8_mask") {
      y.scalar<bool>(value, "int8_mask", "true or false");  // the mask's storage type: no effect on the values
    } else if (name == "lambda") {
      const double lambda = y.scalar<double>(value, "lambda", "one number (rvec's w)");
      const std::string problem = param_value_problem(vector_weight_param(), lambda);
      if (!problem.empty()) y.error(value, fmt::format("field \"lambda\" (rvec's w) {}", problem));
      r.weights = {lambda};
    } else {
      y.error(entry.first, fmt::format("parameter \"{}\" is not supported for {} by rvec", name, method.name));
    }
  }
}

// One entry of `models:`; nothing for the base model itself.
std::optional<RecipeVector> read_model_entry(const YamlReader& y, const YAML::Node& node, const MergekitMethod& method,
                                             const std::string& base, bool global_weight) {
  y.only(node, {"model", "parameters"}, "a model of a mergekit config");
  if (!node["model"]) y.error(node, "a model needs \"model\"");
  RecipeVector v{base, read_model(y, node["model"], "model")};
  if (const auto params = node["parameters"]; params && !params.IsNull()) {
    if (!params.IsMap()) y.error(params, "field \"parameters\" must be a mapping");
    for (const auto& entry : params) {
      const auto name = entry.first.as<std::string>();
      if (name == "weight" || name == "density" || (name == "gamma" && method.gamma)) {
        v.params.insert_or_assign(name, read_model_param(y, entry.first, entry.second, method));
      } else if (name == "normalize" || name == "rescale" || name == "int8_mask" || name == "lambda") {
        y.error(entry.first, fmt::format("\"{}\" is one value for the whole merge: mergekit reads it only from the "
                                         "top-level parameters, so put it there",
                                         name));
      } else {
        y.error(entry.first, fmt::format("parameter \"{}\" is not supported for {} by rvec", name, method.name));
      }
    }
  }
  if (v.post == base) return std::nullopt;  // mergekit leaves the base out of the task vectors (its values checked)
  if (!global_weight && !v.params.contains("weight")) {
    y.error(node, fmt::format("model {} has no weight (mergekit requires one per model)", v.post));
  }
  return v;
}

// mergekit's defaults, written out (rvec's own differ for some).
void add_mergekit_defaults(const MergekitMethod& method, Recipe& r) {
  if (method.name == "task_arithmetic") {
    r.params.try_emplace("normalize", ParamSetting::word(method.normalize ? "true" : "false"));
    return;
  }
  // A merge-wide setting whose filters leave tensors out falls back to mergekit's default there too.
  const auto set_default = [&r](const std::string& name, double value) {
    const auto [at, fresh] = r.params.try_emplace(name, value);
    if (!fresh) at->second = at->second.or_else(value);
  };
  set_default("density", 1.0);
  r.params.try_emplace("normalize", ParamSetting::word(method.normalize ? "true" : "false"));
  r.params.try_emplace("rescale", ParamSetting::word(method.rescale));
  if (method.gamma) set_default("gamma", 0.01);
  if (method.votes) r.params.try_emplace("vote", ParamSetting::word("weighted"));
}

}  // namespace

bool is_mergekit_config(const std::string& text) {
  try {
    const YAML::Node root = YAML::Load(text);
    return root.IsMap() && root["merge_method"];
  } catch (const YAML::Exception&) {
    return false;
  }
}

Recipe mergekit_recipe(const std::string& text, const std::string& origin, const std::string& output) {
  const YamlReader y(origin);
  YAML::Node root = y.load(text);
  if (root.IsMap()) drop_empty_fields(root);
  for (const auto& [field, instead] : kUnsupported) {
    if (root[field]) y.error(root[field], fmt::format("field \"{}\" of mergekit configs is not supported ({})", field, instead));
  }
  y.only(root, {"merge_method", "base_model", "models", "parameters", "dtype", "out_dtype", "tokenizer_source"},
         "a mergekit config");
  const MergekitMethod& method = read_method(y, root);
  if (output.empty()) bad_input("{}: a mergekit config names no output folder; give one with -o OUT", origin);
  if (!root["base_model"]) bad_input("{}: merge_method {} needs base_model (the model the vectors start from)", origin, method.name);
  Recipe r;
  r.kind = JobKind::kMerge;
  r.method = method.name;
  r.target = read_model(y, root["base_model"], "base_model");
  r.output = output;
  r.weights = {1.0};
  r.weight_required = true;
  if (const auto source = root["tokenizer_source"]) {
    const auto value = y.scalar<std::string>(source, "tokenizer_source", "base");
    if (value != "base") {
      y.error(source, fmt::format("tokenizer_source \"{}\" is not supported: the output keeps the base model's "
                                  "tokenizer (tokenizer_source: base)",
                                  value));
    }
  }
  if (const auto params = root["parameters"]) read_global_parameters(y, params, method, r);
  const auto models = root["models"];
  if (!models || !models.IsSequence()) bad_input("{}: a mergekit config for rvec needs a \"models\" list", origin);
  std::map<std::string, int> listed;  // model -> its line
  for (const auto& node : models) {
    auto v = read_model_entry(y, node, method, r.target, r.params.contains("weight"));
    if (!v) continue;
    const auto [at, fresh] = listed.try_emplace(fs::path(v->post).lexically_normal().string(), node.Mark().line + 1);
    if (!fresh) {
      y.error(node, fmt::format("model {} is listed twice (first on line {}); mergekit keys its models by path, so it "
                                "would merge it once: list it once",
                                v->post, at->second));
    }
    r.vectors.push_back(std::move(*v));
  }
  if (r.vectors.empty()) y.error(models, "no model besides base_model: nothing to merge");
  for (const char* field : {"dtype", "out_dtype"}) {  // both checked, as mergekit does; out_dtype wins
    if (!root[field]) continue;
    const auto torch = y.scalar<std::string>(root[field], field, "a torch dtype");
    r.dtype = rvec_dtype(torch);
    if (!r.dtype) y.error(root[field], fmt::format("{} \"{}\" is not bfloat16, float16 or float32", field, torch));
  }
  add_mergekit_defaults(method, r);
  return r;
}

}  // namespace rvec
