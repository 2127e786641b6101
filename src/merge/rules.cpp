#include "merge/rules.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cmath>

#include "base/error.hpp"

namespace rvec {

namespace {

double parse_scale(const std::string& text, const std::string& spec) {
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(value)) {
    fail(ErrorKind::kUsage, "rule \"{}\": \"{}\" is not a number", spec, text);
  }
  return value;
}

uint64_t parse_index(const std::string& text, const std::string& range) {
  uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) {
    fail(ErrorKind::kUsage, "layer range \"{}\": \"{}\" is not a layer number", range, text);
  }
  return value;
}

// "a.b" -> "a\.b": a tensor name as a regex that matches only itself.
std::string escape_dots(std::string_view name) {
  std::string out;
  for (const char c : name) {
    if (c == '.') out += '\\';
    out += c;
  }
  return out;
}

// ^model\.layers\.[0-9]+\.(SUFFIX|...)$ over the table's layer tensors of the kinds chosen.
template <typename Predicate>
std::string layer_tensors_regex(Predicate chosen, std::string_view extra = {}) {
  std::string alternatives;
  for (const auto& t : kLayerTensors) {
    if (!chosen(t.kind)) continue;
    alternatives += (alternatives.empty() ? "" : "|") + escape_dots(t.suffix);
  }
  std::string regex = fmt::format("^{}[0-9]+\\.({})$", escape_dots(kLayerPrefix), alternatives);
  if (!extra.empty()) regex = fmt::format("{}|^{}$", regex, escape_dots(extra));
  return regex;
}

bool is_attention(ModuleKind kind) {
  return kind == ModuleKind::kAttnQ || kind == ModuleKind::kAttnK || kind == ModuleKind::kAttnV ||
         kind == ModuleKind::kAttnO;
}

}  // namespace

TensorRule::TensorRule(std::optional<std::string> pattern, std::optional<std::pair<uint64_t, uint64_t>> layers,
                       double scale)
    : pattern_(std::move(pattern)), layers_(layers), scale_(scale) {
  if (!pattern_ && !layers_) fail(ErrorKind::kUsage, "a tensor rule needs a regex or a layer range");
  if (layers_ && layers_->first > layers_->second) {
    fail(ErrorKind::kUsage, "layer range {}-{} is empty", layers_->first, layers_->second);
  }
  if (pattern_) regex_.emplace(*pattern_, "tensor rule regex");
}

TensorRule::~TensorRule() = default;
TensorRule::TensorRule(TensorRule&&) noexcept = default;
TensorRule& TensorRule::operator=(TensorRule&&) noexcept = default;

bool TensorRule::matches(const std::string& name) const {
  if (layers_) {
    const auto layer = layer_index(name);
    if (!layer || *layer < layers_->first || *layer > layers_->second) return false;
  }
  if (regex_ && !regex_->matches_somewhere(name)) return false;
  return true;
}

std::string TensorRule::describe() const {
  std::string out;
  if (pattern_) out += fmt::format("match '{}'", *pattern_);
  if (layers_) out += fmt::format("{}layers {}-{}", out.empty() ? "" : " ", layers_->first, layers_->second);
  return out + fmt::format(" scale {}", scale_);
}

TensorRule TensorRule::skip(const std::string& pattern) { return TensorRule(pattern, std::nullopt, 0.0); }

TensorRule TensorRule::scaled(const std::string& spec) {
  const auto eq = spec.rfind('=');
  if (eq == std::string::npos) fail(ErrorKind::kUsage, "rule \"{}\" must look like REGEX=SCALE", spec);
  return TensorRule(spec.substr(0, eq), std::nullopt, parse_scale(spec.substr(eq + 1), spec));
}

TensorRule TensorRule::layers(const std::string& spec) {
  const auto eq = spec.rfind('=');
  if (eq == std::string::npos) fail(ErrorKind::kUsage, "layer rule \"{}\" must look like A-B=SCALE", spec);
  return TensorRule(std::nullopt, parse_layer_range(spec.substr(0, eq)), parse_scale(spec.substr(eq + 1), spec));
}

std::pair<uint64_t, uint64_t> parse_layer_range(const std::string& range) {
  const auto dash = range.find('-');
  const std::string first = range.substr(0, dash);
  const std::string last = dash == std::string::npos ? first : range.substr(dash + 1);
  return {parse_index(first, range), parse_index(last, range)};
}

std::optional<TensorRule> part_rule(const std::string& part, double scale) {
  if (part == "attention") return TensorRule(layer_tensors_regex(is_attention), std::nullopt, scale);
  if (part == "mlp") {
    return TensorRule(layer_tensors_regex([](ModuleKind k) { return k == ModuleKind::kMlp; }), std::nullopt, scale);
  }
  if (part == "norms") {
    return TensorRule(layer_tensors_regex([](ModuleKind k) { return k == ModuleKind::kNorms; }, kFinalNormName),
                      std::nullopt, scale);
  }
  if (part == "embeddings") {
    return TensorRule(fmt::format("^{}$|^{}$", escape_dots(kEmbedName), escape_dots(kLmHeadName)), std::nullopt, scale);
  }
  for (const std::string_view word : {"layer ", "layers "}) {
    if (part.starts_with(word)) return TensorRule(std::nullopt, parse_layer_range(part.substr(word.size())), scale);
  }
  return std::nullopt;
}

std::vector<TensorRule> part_rules(const std::vector<std::string>& parts, bool keep) {
  std::vector<TensorRule> rules;
  for (const auto& part : parts) {
    auto rule = part_rule(part, keep ? 1.0 : 0.0);
    if (!rule) fail(ErrorKind::kUsage, "unknown part \"{}\" of a vector (known: {})", part, kVectorParts);
    rules.push_back(std::move(*rule));
  }
  if (keep) rules.emplace_back(".", std::nullopt, 0.0);  // everything else
  return rules;
}

const TensorRule* first_match(const std::vector<TensorRule>& rules, const std::string& name) {
  for (const auto& rule : rules) {
    if (rule.matches(name)) return &rule;
  }
  return nullptr;
}

}  // namespace rvec
