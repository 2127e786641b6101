#include "merge/methods/trim_and_sum.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

#include "merge/methods/dare_mask.hpp"

namespace rvec {
namespace {

constexpr size_t kHighBins = 1 << 15;  // the high 16 bits of |d| (the sign bit is clear)
constexpr size_t kLowBins = 1 << 16;

uint32_t magnitude_bits(float x) { return std::bit_cast<uint32_t>(x) & 0x7FFFFFFFu; }

// Membership of the top k by |d| (ties by lowest index) of one tensor's
// vector, found by radix select: count_high over the whole tensor, then
// choose_bin, count_low over it again, choose_threshold; then admits() walks
// the elements in order.
class RankBound {
 public:
  RankBound(uint64_t k, uint64_t n) : k_(k), all_(k >= n), none_(k == 0) {}

  bool trivial() const { return all_ || none_; }

  void choose_bin(const std::vector<uint64_t>& high) {
    if (trivial()) return;
    uint64_t seen = 0;
    for (size_t bin = kHighBins; bin-- > 0;) {
      if (seen + high[bin] >= k_) {
        bin_ = static_cast<uint32_t>(bin);
        above_ = seen;
        break;
      }
      seen += high[bin];
    }
    low_.assign(kLowBins, 0);
  }

  void count_low(std::span<const float> delta) {
    if (trivial()) return;
    for (float x : delta) {
      const uint32_t bits = magnitude_bits(x);
      if ((bits >> 16) == bin_) ++low_[bits & 0xFFFF];
    }
  }

  void choose_threshold() {
    if (trivial()) return;
    uint64_t seen = above_;
    for (size_t low = kLowBins; low-- > 0;) {
      if (seen + low_[low] >= k_) {
        threshold_ = (bin_ << 16) | static_cast<uint32_t>(low);
        equal_wanted_ = k_ - seen;
        break;
      }
      seen += low_[low];
    }
    low_ = {};
  }

  void restart() { equal_seen_ = 0; }

  // Is the next element (in element order) among the top k?
  bool admits(uint32_t bits) {
    if (all_) return true;
    if (none_) return false;
    if (bits != threshold_) return bits > threshold_;
    return equal_seen_++ < equal_wanted_;
  }

 private:
  uint64_t k_;
  bool all_, none_;
  uint32_t bin_ = 0;
  uint64_t above_ = 0;  // elements in higher bins
  std::vector<uint64_t> low_;
  uint32_t threshold_ = 0;
  uint64_t equal_wanted_ = 0, equal_seen_ = 0;
};

enum class Rescale { kNone, kInverseDensity, kL1 };

Rescale rescale_of(const MethodParams& params, const MergeMethod& method) {
  const MethodParam* declared = find_param(method, "rescale");
  if (!declared) return Rescale::kNone;
  const std::string& word = declared->choices.at(static_cast<size_t>(params.at("rescale")));
  return word == "l1" ? Rescale::kL1 : word == "density" ? Rescale::kInverseDensity : Rescale::kNone;
}

bool param_flag(const MethodParams& params, const char* name, bool otherwise) {
  const auto it = params.find(name);
  return it == params.end() ? otherwise : it->second != 0;
}

// What one vector keeps of one tensor: the rank bounds (top-k: [0, k);
// band: [lo, lo + k)) or DARE's limit.
struct VectorTrim {
  std::vector<RankBound> bounds;
  uint64_t dare_key = 0, dare_limit = 0;
  bool nontrivial = false;  // keeps neither every element nor none

  VectorTrim(TrimKind trim, const TensorContext& context, size_t vector) {
    const MethodParams& p = context.vector_params[vector];
    const uint64_t n = context.elements;
    const double density = p.at("density");
    const auto k = static_cast<uint64_t>(std::floor(density * static_cast<double>(n)));
    switch (trim) {
      case TrimKind::kTopK:
        bounds.emplace_back(k, n);
        nontrivial = !bounds[0].trivial();
        break;
      case TrimKind::kBand: {
        const auto top = static_cast<uint64_t>(std::floor(p.at("gamma") * static_cast<double>(n)));
        const uint64_t lo = std::min(top, n - k);
        bounds.emplace_back(lo, n);
        bounds.emplace_back(lo + k, n);
        nontrivial = k != 0 && k != n;
        break;
      }
      case TrimKind::kRandom:
        dare_key = dare::stream_key(static_cast<uint64_t>(p.at("seed")), context.name, vector);
        dare_limit = dare::keep_limit(density);
        nontrivial = density > 0 && density < 1;
        break;
    }
  }

  bool keeps(TrimKind trim, uint64_t j, float x) {
    switch (trim) {
      case TrimKind::kTopK: return bounds[0].admits(magnitude_bits(x));
      case TrimKind::kBand: {
        const uint32_t bits = magnitude_bits(x);
        const bool in_upper = bounds[1].admits(bits);  // both advance their tie counters
        const bool in_top = bounds[0].admits(bits);
        return in_upper && !in_top;
      }
      case TrimKind::kRandom: return dare::keeps(dare_key, j, dare_limit);
    }
    return true;
  }

  void restart() {
    for (auto& b : bounds) b.restart();
  }
};

// The passes a tensor needs: the two radix passes when some vector's rank
// selection is not trivial, and the l1 pass when rescaling to the l1 norm.
struct PassLayout {
  unsigned rank_passes = 0;
  bool l1_pass = false;
  unsigned total() const { return rank_passes + (l1_pass ? 1 : 0); }
};

PassLayout pass_layout(TrimKind trim, Rescale rescale, const std::vector<VectorTrim>& vectors) {
  const bool nontrivial = std::ranges::any_of(vectors, [](const VectorTrim& v) { return v.nontrivial; });
  PassLayout layout;
  if (!nontrivial) return layout;
  layout.rank_passes = trim == TrimKind::kRandom ? 0 : 2;
  layout.l1_pass = rescale == Rescale::kL1;
  return layout;
}

std::vector<VectorTrim> vector_trims(TrimKind trim, const TensorContext& context) {
  std::vector<VectorTrim> out;
  for (size_t i = 0; i < context.vector_params.size(); ++i) out.emplace_back(trim, context, i);
  return out;
}

class TrimAndSumCombiner final : public TensorCombiner {
 public:
  TrimAndSumCombiner(const TrimAndSumConfig& config, const MergeMethod& method, const TensorContext& context)
      : trim_(config.trim),
        elect_(config.elect_sign),
        vote_weighted_(param_flag(*context.params, "vote", false)),
        normalize_(param_flag(*context.params, "normalize", false)),
        rescale_(rescale_of(*context.params, method)),
        vectors_(vector_trims(trim_, context)),
        layout_(pass_layout(trim_, rescale_, vectors_)),
        factors_(vectors_.size(), 1.0f),
        l1_(vectors_.size()),
        trimmed_(vectors_.size()) {
    for (double w : context.vector_weights) weights_.push_back(static_cast<float>(w));
    if (rescale_ == Rescale::kInverseDensity) {
      for (size_t i = 0; i < vectors_.size(); ++i) {
        const double density = context.vector_params[i].at("density");
        if (density > 0) factors_[i] = static_cast<float>(1.0 / density);
      }
    }
    if (layout_.rank_passes > 0) high_.assign(vectors_.size(), std::vector<uint64_t>(kHighBins, 0));
  }

  void observe(unsigned pass, size_t vector, uint64_t first, std::span<const float> delta) override {
    VectorTrim& v = vectors_[vector];
    if (pass < layout_.rank_passes) {
      if (pass == 0) {
        auto& high = high_[vector];
        for (float x : delta) ++high[magnitude_bits(x) >> 16];
      } else {
        for (auto& bound : v.bounds) bound.count_low(delta);
      }
      return;
    }
    auto& [all, kept] = l1_[vector];
    for (size_t j = 0; j < delta.size(); ++j) {
      const double magnitude = std::fabs(static_cast<double>(delta[j]));
      all += magnitude;
      if (v.keeps(trim_, first + j, delta[j])) kept += magnitude;
    }
  }

  void end_pass(unsigned pass) override {
    for (size_t i = 0; i < vectors_.size(); ++i) {
      VectorTrim& v = vectors_[i];
      if (pass == 0 && layout_.rank_passes > 0) {
        for (auto& bound : v.bounds) bound.choose_bin(high_[i]);
      } else if (pass == 1 && layout_.rank_passes > 0) {
        for (auto& bound : v.bounds) bound.choose_threshold();
      } else {
        const auto [all, kept] = l1_[i];
        factors_[i] = all < 1e-7 || kept < 1e-7 ? 1.0f : static_cast<float>(all / kept);
        v.restart();
      }
    }
    if (pass == 0) high_ = {};
  }

  const float* combine(uint64_t first, size_t n, std::span<const float* const> deltas, float* scratch) override {
    for (size_t i = 0; i < vectors_.size(); ++i) trim(i, first, n, deltas[i]);
    if (elect_) {
      elect_and_sum(n, scratch);
    } else {
      sum(n, scratch);
    }
    return scratch;
  }

 private:
  void trim(size_t i, uint64_t first, size_t n, const float* delta) {
    std::vector<float>& t = trimmed_[i];
    t.resize(n);
    const float r = factors_[i];
    for (size_t j = 0; j < n; ++j) t[j] = vectors_[i].keeps(trim_, first + j, delta[j]) ? delta[j] * r : 0.0f;
  }

  void sum(size_t n, float* out) const {
    std::vector<const float*> inputs;
    for (const auto& t : trimmed_) inputs.push_back(t.data());
    weighted_sum(weights_, inputs, n, normalize_, out);
  }

  void elect_and_sum(size_t n, float* out) const {
    const size_t count = vectors_.size();
    for (size_t j = 0; j < n; ++j) {
      const auto vote_term = [&](size_t i) { return vote_weighted_ ? weights_[i] * trimmed_[i][j] : trimmed_[i][j]; };
      float s = vote_term(0);
      for (size_t i = 1; i < count; ++i) s += vote_term(i);
      const bool positive = s >= 0;
      float m = 0.0f, q = 0.0f;
      for (size_t i = 0; i < count; ++i) {
        const float x = vote_term(i);
        if (positive ? x > 0 : x < 0) {
          m += weights_[i] * trimmed_[i][j];
          q += weights_[i];
        }
      }
      out[j] = normalize_ ? m / (q == 0 ? 1.0f : q) : m;
    }
  }

  TrimKind trim_;
  bool elect_, vote_weighted_, normalize_;
  Rescale rescale_;
  std::vector<VectorTrim> vectors_;
  PassLayout layout_;
  std::vector<float> weights_, factors_;
  std::vector<std::pair<double, double>> l1_;  // (l1 of d, l1 of what is kept), per vector
  std::vector<std::vector<uint64_t>> high_;     // per vector, during the first rank pass
  std::vector<std::vector<float>> trimmed_;     // t_i of the current tile
};

}  // namespace

void weighted_sum(std::span<const float> weights, std::span<const float* const> inputs, size_t n, bool normalize,
                  float* out) {
  for (size_t j = 0; j < n; ++j) out[j] = weights[0] * inputs[0][j];
  for (size_t i = 1; i < inputs.size(); ++i) {
    for (size_t j = 0; j < n; ++j) out[j] += weights[i] * inputs[i][j];
  }
  if (!normalize) return;
  float q = weights[0];
  for (size_t i = 1; i < weights.size(); ++i) q += weights[i];
  if (std::fabs(q) < 1e-8f) q = 1.0f;
  for (size_t j = 0; j < n; ++j) out[j] /= q;
}

unsigned TrimAndSumMethod::statistics_passes(const TensorContext& context) const {
  return pass_layout(config_.trim, rescale_of(*context.params, *this), vector_trims(config_.trim, context)).total();
}

std::unique_ptr<TensorCombiner> TrimAndSumMethod::begin_tensor(const TensorContext& context) const {
  return std::make_unique<TrimAndSumCombiner>(config_, *this, context);
}

MethodParam density_param(double default_value) {
  return {"density", default_value, 0.0, 1.0, "share of each vector's elements kept", {}, true};
}

MethodParam gamma_param() {
  return {"gamma", 0.01, 0.0, 1.0, "share of each vector's largest |v| dropped before the density share is kept", {},
          true};
}

MethodParam seed_param() {
  return {"seed", 0, 0, 9007199254740992.0, "seed of the drop decisions (docs/merging.md)", {}, false, true};
}

MethodParam vote_param() {
  return {"vote", 0, 0, 1, "sign election over the trimmed vectors (unweighted, the paper) or over w_i v_i (weighted, mergekit)",
          {"unweighted", "weighted"}};
}

MethodParam normalize_param(bool default_value) {
  return {"normalize", default_value ? 1.0 : 0.0, 0, 1, "divide by the sum of the weights that contributed",
          {"false", "true"}};
}

MethodParam rescale_param(std::vector<std::string> choices) {
  return {"rescale", 0, 0, static_cast<double>(choices.size() - 1),
          "survivors times 1/density (density), times l1(v)/l1(kept) (l1), or unchanged (none)", std::move(choices)};
}

}  // namespace rvec
