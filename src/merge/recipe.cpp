#include "merge/recipe.hpp"

#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <set>

#include "base/error.hpp"
#include "base/json.hpp"
#include "base/text.hpp"
#include "base/yaml_reader.hpp"

namespace rvec {
namespace {

JobKind parse_kind(const std::string& text, const YAML::Node& node, const YamlReader& y) {
  if (text == "merge" || text.empty()) return JobKind::kMerge;
  if (text == "apply") return JobKind::kApply;
  if (text == "extract") return JobKind::kExtract;
  if (text == "export") return JobKind::kExport;
  y.error(node, fmt::format("field \"kind\" is \"{}\", not merge, apply, extract or export", text));
}

// format, type and split_max_size: GGUF output.
void read_gguf_options(const Recipe& r, JobSpec& spec) {
  if (r.format != "safetensors" && r.format != "gguf") {
    fail(ErrorKind::kUsage, "format \"{}\" is not safetensors or gguf", r.format);
  }
  if (r.format != "gguf" && r.kind != JobKind::kExport) {
    if (r.gguf_type || r.split_max_size) fail(ErrorKind::kUsage, "type and split_max_size are for GGUF output (format gguf)");
    return;
  }
  spec.format = OutputFormat::kGguf;
  if (!r.gguf_type) fail(ErrorKind::kUsage, "a GGUF output needs its type: f32, f16, bf16, q8_0 or q4_k_m");
  const auto type = parse_gguf_file_type(*r.gguf_type);
  if (!type) fail(ErrorKind::kUsage, "type \"{}\" is not f32, f16, bf16, q8_0 or q4_k_m", *r.gguf_type);
  spec.gguf_type = *type;
  if (r.split_max_size) {
    const auto bytes = parse_byte_size(*r.split_max_size);
    if (!bytes || *bytes == 0) fail(ErrorKind::kUsage, "split size \"{}\" is not a size like 50GB", *r.split_max_size);
    spec.gguf_split_bytes = *bytes;
  }
}

// map[field]: the weights w, each a finite f32 number.
std::vector<double> read_weights(const YamlReader& y, const YAML::Node& map, const char* field) {
  std::vector<double> weights = y.numbers(map, field);
  for (const double w : weights) {
    const std::string problem = param_value_problem(vector_weight_param(), w);
    if (!problem.empty()) y.error(map[field], fmt::format("field \"{}\": w {}", field, problem));
  }
  return weights;
}

const MergeMethod& read_method(const YamlReader& y, const YAML::Node& root) {
  const auto node = root["method"];
  if (!node) return merge_method(kDefaultMergeMethod);
  const auto name = y.scalar<std::string>(node, "method", "a merge method's name");
  if (const MergeMethod* method = find_merge_method(name)) return *method;
  y.error(node, fmt::format("unknown merge method \"{}\" (known: {})", name, fmt::join(merge_method_names(), ", ")));
}

// `map`'s entries other than `skip` as settings, each a parameter `method` takes there.
ParamSettings read_settings(const YamlReader& y, const YAML::Node& map, const std::set<std::string>& skip,
                            const MergeMethod& method, bool per_vector_only, const std::string& where) {
  ParamSettings settings;
  for (const auto& entry : map) {
    const auto name = entry.first.as<std::string>();
    if (skip.contains(name)) continue;
    const MethodParam* declared = find_param(method, name);
    const bool known = name == "weight" || (declared && (declared->per_vector || !per_vector_only));
    if (!known) {
      std::vector<std::string> accepted = {"weight"};
      for (const auto& p : method.params()) {
        if (p.per_vector || !per_vector_only) accepted.push_back(p.name);
      }
      y.error(entry.first, fmt::format("unknown field \"{}\" in {} (method {} takes: {})", name, where, method.name(),
                                       fmt::join(accepted, ", ")));
    }
    settings.emplace(name, read_param_setting(y, entry.second, *find_setting_param(method, name)));
  }
  return settings;
}

std::vector<RecipeVector> read_vectors(const YamlReader& y, const YAML::Node& list, const MergeMethod& method) {
  if (!list.IsSequence() || list.size() == 0) y.error(list, "field \"vectors\" must be a list of vectors");
  std::vector<RecipeVector> vectors;
  for (const auto& node : list) {
    if (!node.IsMap()) y.error(node, "a vector must be a mapping ({pre, post} or {vector}, with weight, ...)");
    RecipeVector v;
    y.read(node, "pre", v.pre, "a model path");
    y.read(node, "post", v.post, "a model path");
    y.read(node, "vector", v.vector, "a vector folder");
    if (v.vector.empty() == (v.pre.empty() || v.post.empty()) || (!v.vector.empty() && (node["pre"] || node["post"]))) {
      y.error(node, "a vector needs \"pre\" and \"post\", or \"vector\" (a folder written by rvec extract)");
    }
    v.params = read_settings(y, node, {"pre", "post", "vector"}, method, true, "a vector");
    vectors.push_back(std::move(v));
  }
  return vectors;
}

// A variant's name names a folder beside the merge's w<w>/ folders; not a
// hidden one, which is where outputs are staged (.w1.rvec-partial).
void check_variant_name(const YamlReader& y, const YAML::Node& node, const std::string& name) {
  const bool plain = !name.empty() && name[0] != '.' && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
  if (!plain) {
    y.error(node, fmt::format("variant name \"{}\" must be a folder name of letters, digits, '-', '_' and '.', "
                              "not starting with '.'",
                              name));
  }
  double w = 0;
  const char* digits = name.data() + 1;
  if (name[0] == 'w' && std::from_chars(digits, name.data() + name.size(), w).ptr == name.data() + name.size()) {
    y.error(node, fmt::format("variant name \"{}\" is the folder of a weight of the merge; choose another", name));
  }
}

std::vector<RecipeVariant> read_variants(const YamlReader& y, const YAML::Node& list) {
  if (!list.IsSequence() || list.size() == 0) y.error(list, "field \"variants\" must be a list of variants");
  std::vector<RecipeVariant> variants;
  std::set<std::string> names;
  for (const auto& node : list) {
    if (!node.IsMap()) y.error(node, "a variant must be a mapping {name, method, params, weights}");
    y.only(node, {"name", "method", "params", "weights"}, "a variant");
    RecipeVariant v;
    y.read(node, "name", v.name, "a folder name");
    check_variant_name(y, node["name"] ? node["name"] : node, v.name);
    if (!names.insert(v.name).second) y.error(node, fmt::format("two variants are named \"{}\"", v.name));
    const MergeMethod& method = read_method(y, node);
    if (node["method"]) v.method = method.name();
    if (const auto params = node["params"]) {
      if (!params.IsMap()) y.error(params, "field \"params\" must be a mapping of parameter names to values");
      v.params = read_settings(y, params, {}, method, false, "params");
    }
    v.weights = read_weights(y, node, "weights");
    variants.push_back(std::move(v));
  }
  return variants;
}

}  // namespace

std::vector<double> parse_weight_list(const std::string& text) {
  std::vector<double> weights;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    double value = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), value);
    if (item.empty() || ec != std::errc() || end != item.data() + item.size() || !std::isfinite(value)) {
      fail(ErrorKind::kUsage, "weight \"{}\" in \"{}\" is not a number", item, text);
    }
    weights.push_back(value);
    start = comma + 1;
  }
  return weights;
}

void add_param_assignment(ParamSettings& params, const std::string& spec) {
  const auto eq = spec.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) {
    fail(ErrorKind::kUsage, "parameter \"{}\" must look like NAME=VALUE (density=0.2, vote=weighted)", spec);
  }
  const std::string name = spec.substr(0, eq), value = spec.substr(eq + 1);
  if (params.contains(name)) fail(ErrorKind::kUsage, "parameter \"{}\" is given twice", printable(name));
  const ScalarText read = read_scalar_text(value);
  if (!read.refusal.empty()) fail(ErrorKind::kUsage, "parameter \"{}\": {}", printable(spec), read.refusal);
  params.emplace(name, read.number ? ParamSetting(*read.number) : ParamSetting::word(value));
}

Recipe parse_recipe(const std::string& text, const std::string& origin) {
  const YamlReader y(origin);
  const YAML::Node root = y.load(text);
  if (!root.IsMap()) bad_input("{}: a recipe must be a YAML mapping (kind, pre, post, target, weights, output, ...)", origin);
  y.only(root, {"kind", "pre", "post", "target", "vector", "vectors", "weights", "output", "dtype", "max_shard_size",
                "overwrite", "max_nonfinite", "rules", "method", "params", "format", "type", "split_max_size",
                "variants"},
         "a recipe");
  Recipe r;
  std::string kind;
  y.read(root, "kind", kind, "merge, apply, extract or export");
  r.kind = parse_kind(kind, root["kind"], y);
  y.read(root, "pre", r.pre, "a model path");
  y.read(root, "post", r.post, "a model path");
  y.read(root, "target", r.target, "a model path");
  y.read(root, "vector", r.vector, "a vector folder");
  y.read(root, "output", r.output, "a folder");
  if (const auto dtype = root["dtype"]) r.dtype = y.scalar<std::string>(dtype, "dtype", "BF16, F16 or F32");
  y.read(root, "max_shard_size", r.max_shard_size, "a size like 5GB");
  y.read(root, "overwrite", r.overwrite, "true or false");
  y.read(root, "max_nonfinite", r.max_nonfinite, "a whole number");
  y.read(root, "format", r.format, "safetensors or gguf");
  if (const auto type = root["type"]) r.gguf_type = y.scalar<std::string>(type, "type", "f32, f16, bf16, q8_0 or q4_k_m");
  if (const auto split = root["split_max_size"]) {
    r.split_max_size = y.scalar<std::string>(split, "split_max_size", "a size like 50GB");
  }
  r.weights = read_weights(y, root, "weights");
  const MergeMethod& method = read_method(y, root);
  if (root["method"]) r.method = method.name();
  if (const auto params = root["params"]) {
    if (!params.IsMap()) y.error(params, "field \"params\" must be a mapping of parameter names to values");
    r.params = read_settings(y, params, {}, method, false, "params");
  }
  if (const auto vectors = root["vectors"]) {
    if (root["pre"] || root["post"] || root["vector"]) {
      y.error(vectors, "give \"vectors\" or pre/post (or vector), not both");
    }
    if (r.kind != JobKind::kMerge) y.error(vectors, "a \"vectors\" list is for kind merge");
    r.vectors = read_vectors(y, vectors, method);
  }
  if (const auto variants = root["variants"]) {
    if (r.kind != JobKind::kMerge) y.error(variants, "a \"variants\" list is for kind merge");
    r.variants = read_variants(y, variants);
  }
  if (const auto rules = root["rules"]) {
    if (!rules.IsSequence()) y.error(rules, "field \"rules\" must be a list");
    for (const auto& rule : rules) {
      y.only(rule, {"match", "layers", "scale"}, "a rule");
      RecipeRule out;
      if (const auto match = rule["match"]) out.match = y.scalar<std::string>(match, "match", "a regex");
      if (const auto layers = rule["layers"]) out.layers = y.scalar<std::string>(layers, "layers", "a range like 0-7");
      y.read(rule, "scale", out.scale, "a number");
      if (!rule["scale"]) y.error(rule, "a rule needs \"scale\" (0 leaves the tensor as in the target)");
      r.rules.push_back(out);
    }
  }
  const auto require = [&](const std::string& value, const char* field) {
    if (value.empty()) bad_input("{}: field \"{}\" is required for kind {}", origin, field, job_kind_name(r.kind));
  };
  require(r.output, "output");
  const bool adds_vector = r.kind == JobKind::kMerge || r.kind == JobKind::kApply;
  if (r.kind != JobKind::kApply && r.kind != JobKind::kExport && r.vectors.empty()) {
    require(r.pre, "pre"), require(r.post, "post");
  }
  if (r.kind != JobKind::kExtract) require(r.target, "target");
  if (r.kind == JobKind::kApply) require(r.vector, "vector");
  if (adds_vector && r.weights.empty()) bad_input("{}: field \"weights\" is required", origin);
  return r;
}

Recipe read_recipe(const std::string& path) { return parse_recipe(read_small_file(path, 1'000'000), path); }

std::string recipe_yaml(const Recipe& r) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "kind" << YAML::Value << std::string(job_kind_name(r.kind));
  for (const auto& [key, value] : {std::pair{"pre", &r.pre}, std::pair{"post", &r.post},
                                   std::pair{"target", &r.target}, std::pair{"vector", &r.vector}}) {
    if (!value->empty()) out << YAML::Key << key << YAML::Value << *value;
  }
  if (!r.vectors.empty()) {
    out << YAML::Key << "vectors" << YAML::Value << YAML::BeginSeq;
    for (const auto& v : r.vectors) {
      out << YAML::BeginMap;
      for (const auto& [key, value] : {std::pair{"pre", &v.pre}, std::pair{"post", &v.post}, std::pair{"vector", &v.vector}}) {
        if (!value->empty()) out << YAML::Key << key << YAML::Value << *value;
      }
      emit_settings(out, v.params);
      out << YAML::EndMap;
    }
    out << YAML::EndSeq;
  }
  if (r.kind == JobKind::kMerge || r.kind == JobKind::kApply) {
    out << YAML::Key << "weights" << YAML::Value << YAML::Flow << r.weights;
  }
  if (!r.method.empty()) out << YAML::Key << "method" << YAML::Value << r.method;
  if (!r.params.empty()) {
    out << YAML::Key << "params" << YAML::Value << YAML::BeginMap;
    emit_settings(out, r.params);
    out << YAML::EndMap;
  }
  out << YAML::Key << "output" << YAML::Value << r.output;
  if (r.dtype) out << YAML::Key << "dtype" << YAML::Value << *r.dtype;
  out << YAML::Key << "max_shard_size" << YAML::Value << r.max_shard_size;
  if (r.format != "safetensors") out << YAML::Key << "format" << YAML::Value << r.format;
  if (r.gguf_type) out << YAML::Key << "type" << YAML::Value << *r.gguf_type;
  if (r.split_max_size) out << YAML::Key << "split_max_size" << YAML::Value << *r.split_max_size;
  if (r.max_nonfinite > 0) out << YAML::Key << "max_nonfinite" << YAML::Value << r.max_nonfinite;
  if (!r.rules.empty()) {
    out << YAML::Key << "rules" << YAML::Value << YAML::BeginSeq;
    for (const auto& rule : r.rules) {
      out << YAML::BeginMap;
      if (rule.match) out << YAML::Key << "match" << YAML::Value << YAML::DoubleQuoted << *rule.match;
      if (rule.layers) out << YAML::Key << "layers" << YAML::Value << *rule.layers;
      out << YAML::Key << "scale" << YAML::Value << rule.scale << YAML::EndMap;
    }
    out << YAML::EndSeq;
  }
  if (!r.variants.empty()) {
    out << YAML::Key << "variants" << YAML::Value << YAML::BeginSeq;
    for (const auto& v : r.variants) {
      out << YAML::BeginMap << YAML::Key << "name" << YAML::Value << v.name;
      if (!v.method.empty()) out << YAML::Key << "method" << YAML::Value << v.method;
      if (!v.params.empty()) {
        out << YAML::Key << "params" << YAML::Value << YAML::BeginMap;
        emit_settings(out, v.params);
        out << YAML::EndMap;
      }
      if (!v.weights.empty()) out << YAML::Key << "weights" << YAML::Value << YAML::Flow << v.weights;
      out << YAML::EndMap;
    }
    out << YAML::EndSeq;
  }
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

JobSpec job_spec(const Recipe& r) {
  JobSpec spec;
  spec.kind = r.kind;
  spec.weights = r.kind == JobKind::kExtract ? std::vector<double>{1.0} : r.weights;
  spec.output = r.output;
  spec.overwrite = r.overwrite;
  spec.weight_required = r.weight_required;
  spec.max_new_nonfinite = r.max_nonfinite;
  if (r.dtype) {
    std::string upper;
    for (char c : *r.dtype) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    const auto dtype = parse_dtype(upper);
    if (!dtype || !is_arithmetic(*dtype)) fail(ErrorKind::kUsage, "dtype \"{}\" is not BF16, F16 or F32", *r.dtype);
    spec.out_dtype = dtype;
  }
  const auto shard = parse_byte_size(r.max_shard_size);
  if (!shard) fail(ErrorKind::kUsage, "max shard size \"{}\" is not a size like 5GB or 500MB", r.max_shard_size);
  spec.max_shard_bytes = *shard;
  read_gguf_options(r, spec);
  if (r.kind == JobKind::kExtract && !r.rules.empty()) {
    fail(ErrorKind::kUsage, "tensor rules apply when a vector is added (merge or apply), not to extract");
  }
  if (r.kind == JobKind::kExtract && (!r.method.empty() || !r.params.empty())) {
    fail(ErrorKind::kUsage, "a merge method applies when vectors are added (merge or apply), not to extract");
  }
  if (!r.method.empty()) spec.method = &merge_method(r.method);
  spec.method_params = r.params;
  for (const auto& v : r.vectors) spec.vector_params.push_back(v.params);
  for (const auto& rule : r.rules) {
    std::optional<std::pair<uint64_t, uint64_t>> layers;
    if (rule.layers) layers = parse_layer_range(*rule.layers);
    spec.rules.emplace_back(rule.match, layers, rule.scale);
  }
  return spec;
}

namespace {

// A job's output: the folder of its weights, or with one weight that
// weight's own folder (GGUF: file), so that every output is `<folder>/w<w>`
// (`<folder>/w<w>.gguf`), as a job of several weights writes them.
std::string job_output(const std::filesystem::path& folder, const Recipe& job) {
  if (job.weights.size() != 1) return folder.string();
  return (folder / (weight_folder_name(job.weights.front()) + (job.format == "gguf" ? ".gguf" : ""))).string();
}

}  // namespace

std::vector<Recipe> recipe_jobs(const Recipe& recipe) {
  if (recipe.variants.empty()) return {recipe};
  Recipe merge = recipe;
  merge.variants.clear();
  merge.output = job_output(recipe.output, merge);
  std::vector<Recipe> jobs{merge};
  for (const auto& v : recipe.variants) {
    Recipe job = merge;
    job.method = v.method;
    job.params = v.params;
    if (!v.weights.empty()) job.weights = v.weights;
    job.output = job_output(std::filesystem::path(recipe.output) / v.name, job);
    jobs.push_back(std::move(job));
  }
  return jobs;
}

}  // namespace rvec
