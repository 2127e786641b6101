// Tensor rules: change how much of the vector a tensor receives.
//
// A rule matches a tensor by regex (PCRE2, searched anywhere in the name; use
// ^...$ to anchor) and/or by layer index (the N of "model.layers.N."), and
// multiplies w by `scale` for it. Scale 0 leaves the tensor exactly as in the
// target. Rules are tried in order; the first that matches decides.
//
//   --skip 'embed_tokens|lm_head|norm'     (scale 0)
//   --scale 'mlp\.=0.5'
//   --layers 0-7=0.25
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/regex.hpp"
#include "hf/tensor_names.hpp"

namespace rvec {

class TensorRule {
 public:
  // Either part may be absent, not both. Fails (usage error) on a bad regex.
  TensorRule(std::optional<std::string> pattern, std::optional<std::pair<uint64_t, uint64_t>> layers,
             double scale);
  ~TensorRule();
  TensorRule(TensorRule&&) noexcept;
  TensorRule& operator=(TensorRule&&) noexcept;

  bool matches(const std::string& tensor_name) const;
  double scale() const { return scale_; }
  // "match 'lm_head' scale 0", as shown in plans and provenance.
  std::string describe() const;

  // Parses the CLI forms: "REGEX" (skip), "REGEX=SCALE", "A-B=SCALE" (layers).
  static TensorRule skip(const std::string& pattern);
  static TensorRule scaled(const std::string& spec);
  static TensorRule layers(const std::string& spec);

 private:
  std::optional<std::string> pattern_;
  std::optional<std::pair<uint64_t, uint64_t>> layers_;
  double scale_;
  std::optional<Regex> regex_;
};

// "0-7" or "5" (inclusive); usage error otherwise.
std::pair<uint64_t, uint64_t> parse_layer_range(const std::string& text);

// A named part of a vector, by the tensor-name table (hf/tensor_names.hpp),
// as a rule with that scale, for ablations:
//   "attention"   every layer's q, k, v, o projections (weights and biases)
//   "mlp"         every layer's gate, up and down projections
//   "norms"       every layer's norms and the final norm
//   "embeddings"  the token embeddings and lm_head (the tensors indexed by token)
//   "layer N", "layers A-B"   every tensor of those layers
// nullopt for any other word; a usage error for a bad layer number.
std::optional<TensorRule> part_rule(const std::string& part, double scale);

// The parts part_rule knows, for messages.
inline constexpr std::string_view kVectorParts = "attention, mlp, norms, embeddings, layer N, layers A-B";

// Rules that keep only the listed parts of a vector (every other tensor
// scale 0), or (keep false) that drop the listed parts. Usage error naming an
// unknown part.
std::vector<TensorRule> part_rules(const std::vector<std::string>& parts, bool keep);

// The first matching rule, or null.
const TensorRule* first_match(const std::vector<TensorRule>& rules, const std::string& tensor_name);
// The result points into `rules`: a temporary list would leave it dangling.
const TensorRule* first_match(std::vector<TensorRule>&& rules, const std::string& tensor_name) = delete;

}  // namespace rvec
