#include "merge/methods/trim_and_sum.hpp"

#include <hwy/aligned_allocator.h>

#include <algorithm>
#include <cmath>

#include "merge/methods/dare_mask.hpp"
#include "merge/methods/rank_select.hpp"
#include "numeric/kernels.hpp"

namespace rvec {
namespace {

// t[j] = (element j ranked in [lo, hi)) ? d[j] * r : 0: in the top `upper`
// but not in the top `top`. Both bounds see every element in order.
void select_band(RankBound& top, RankBound& upper, const float* d, float r, float* t, size_t n) {
  const kernels::BandTaken taken = kernels::keep_band(d, upper.limit(), top.limit(), r, t, n);
  upper.took(taken.wide);
  top.took(taken.narrow);
}

// Floats for one tile, aligned for whole-vector stores; grown as tiles need.
class TileBuffer {
 public:
  float* get(size_t n) {
    if (n > capacity_) {
      data_ = hwy::AllocateAligned<float>(n);
      capacity_ = n;
    }
    return data_.get();
  }

 private:
  hwy::AlignedFreeUniquePtr<float[]> data_;
  size_t capacity_ = 0;
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
// band: [lo, lo + k)) or DARE's key and limit.
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

  // t = keep ? d * r : 0 for elements [first, first + n), in element order.
  void apply(TrimKind trim, uint64_t first, const float* d, float r, float* t, size_t n) {
    switch (trim) {
      case TrimKind::kRandom: kernels::keep_drawn(dare_key, first, dare_limit, d, r, t, n); break;
      case TrimKind::kTopK: bounds[0].select(d, r, t, n); break;
      case TrimKind::kBand: select_band(bounds[0], bounds[1], d, r, t, n); break;
    }
  }

  void restart() {
    for (auto& b : bounds) b.restart();
  }
};

// The passes a tensor may need: the radix passes when some vector's rank
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
  layout.rank_passes = trim == TrimKind::kRandom ? 0 : RankBound::kMostPasses;
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
      : tensor_(context.name),
        trim_(config.trim),
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
  }

  void observe(unsigned pass, size_t vector, uint64_t first, std::span<const float> delta) override {
    VectorTrim& v = vectors_[vector];
    if (pass < layout_.rank_passes) {
      for (auto& bound : v.bounds) {
        if (bound.wants(pass)) bound.observe(delta);
      }
      return;
    }
    // The l1 pass: sums in double, in element order, of |d| and of |d| kept.
    float* kept = trimmed_[vector].get(delta.size());
    v.apply(trim_, first, delta.data(), 1.0f, kept, delta.size());
    auto& [all, kept_sum] = l1_[vector];
    for (size_t j = 0; j < delta.size(); ++j) {
      all += std::fabs(static_cast<double>(delta[j]));
      kept_sum += std::fabs(static_cast<double>(kept[j]));
    }
  }

  void end_pass(unsigned pass) override {
    for (size_t i = 0; i < vectors_.size(); ++i) {
      VectorTrim& v = vectors_[i];
      if (pass < layout_.rank_passes) {
        for (auto& bound : v.bounds) bound.end_pass(pass);
      } else {
        const auto [all, kept] = l1_[i];
        if (!std::isfinite(all) || !std::isfinite(kept)) fail_nonfinite_statistic(tensor_, i, "l1 sum (rescale: l1)");
        factors_[i] = all < 1e-7 || kept < 1e-7 ? 1.0f : static_cast<float>(all / kept);
        v.restart();
      }
    }
  }

  // The later rank passes only when some bound's threshold fell outside the
  // window the first pass counted.
  bool needs_pass(unsigned pass) const override {
    if (pass >= layout_.rank_passes) return true;
    return std::ranges::any_of(vectors_, [pass](const VectorTrim& v) {
      return std::ranges::any_of(v.bounds, [pass](const RankBound& b) { return b.wants(pass); });
    });
  }

  const float* combine(uint64_t first, size_t n, std::span<const float* const> deltas, float* scratch) override {
    for (size_t i = 0; i < vectors_.size(); ++i) {
      float* trimmed = trimmed_[i].get(n);
      trimmed_pointers_[i] = trimmed;
      vectors_[i].apply(trim_, first, deltas[i], factors_[i], trimmed, n);
    }
    if (!elect_) return weighted_sum(weights_, trimmed_pointers_, n, normalize_, scratch);
    kernels::elect_sum(trimmed_pointers_.data(), weights_.data(), vectors_.size(), vote_weighted_, normalize_, scratch, n);
    return scratch;
  }

 private:
  std::string tensor_;
  TrimKind trim_;
  bool elect_, vote_weighted_, normalize_;
  Rescale rescale_;
  std::vector<VectorTrim> vectors_;
  PassLayout layout_;
  std::vector<float> weights_, factors_;
  std::vector<std::pair<double, double>> l1_;  // (l1 of d, l1 of what is kept), per vector
  std::vector<TileBuffer> trimmed_;             // t_i of the current tile
  std::vector<const float*> trimmed_pointers_ = std::vector<const float*>(vectors_.size());
};

}  // namespace

const float* weighted_sum(std::span<const float> weights, std::span<const float* const> inputs, size_t n,
                          bool normalize, float* out) {
  if (inputs.size() == 1 && weights[0] == 1.0f && !normalize) return inputs[0];
  kernels::scale(weights[0], inputs[0], out, n);
  for (size_t i = 1; i < inputs.size(); ++i) kernels::add_scaled(out, weights[i], inputs[i], out, n);
  if (!normalize) return out;
  float q = weights[0];
  for (size_t i = 1; i < weights.size(); ++i) q += weights[i];
  if (std::fabs(q) < 1e-8f) q = 1.0f;
  for (size_t j = 0; j < n; ++j) out[j] /= q;
  return out;
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
