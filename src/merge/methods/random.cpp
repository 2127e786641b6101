// random: a control with each vector's per-tensor norm and magnitudes but a
// random direction: the vector's elements shuffled and sign-flipped inside
// each tensor, a pure function of (seed, tensor name, vector index). A
// target + w · random(v) that does not gain while target + w · v does ties
// the effect to v's direction, not to its size. In full (docs/merging.md):
//
//   statistics pass:  c_b, s_b  = count and sum (double, element order) of
//                                 |d| over the elements whose |d| has high
//                                 16 bits b (2^15 bins, 2^-7 relative width)
//                     S         = Σ d² (double, element order)
//   element pass:     r(j)      = σ_j · f32(a_b · f),  a_b = s_b / c_b,
//                                 f = sqrt(S / Σ_b c_b a_b²) (0 when S is 0),
//                                 b = the bin holding rank π(j) when the
//                                 ranks 0..n-1 fill the bins in ascending b
//   δ = w_0 r_0 + w_1 r_1 + ... (f32, in vector order)
//
//   key   = the DARE key of (seed, tensor name, vector index) (dare_mask.hpp)
//   π     = a bijection of [0, n): a 4-round Feistel network on 2h bits,
//           h = max(1, ceil(bit_width(n - 1) / 2)), m = 2^h - 1, x = (L, R):
//           round k = 0..3:  (L, R) <- (R, L ^ (mix(key ^ (R + (k + 1) * G)) & m)),
//           x = L * 2^h + R, repeated (cycle walking) until x < n
//   σ_j   = −1 when the top bit of mix(key + (j + 1) * G) is set, else +1
//   G     = 0x9E3779B97F4A7C15, mix = SplitMix64's finaliser
//
// So r holds v's multiset of magnitudes (each replaced by its bin's mean)
// in shuffled places with random signs, rescaled to ||v|| exactly. Memory:
// 512 KiB of bins per vector, whatever the tensor size.
#include <algorithm>
#include <bit>
#include <cmath>

#include "base/hash.hpp"
#include "merge/methods/dare_mask.hpp"
#include "merge/methods/registry.hpp"
#include "merge/methods/trim_and_sum.hpp"

namespace rvec {
namespace {

constexpr size_t kBins = 1 << 15;  // the high 16 bits of |d| (the sign bit is clear)
constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

// π: a keyed bijection of [0, n), by a Feistel network and cycle walking.
class Shuffle {
 public:
  Shuffle(uint64_t key, uint64_t n)
      : key_(key), n_(n), half_(std::max(1, (static_cast<int>(std::bit_width(n > 0 ? n - 1 : 0)) + 1) / 2)), mask_((1ull << half_) - 1) {}

  uint64_t operator()(uint64_t x) const {
    do {
      uint64_t left = x >> half_, right = x & mask_;
      for (uint64_t k = 0; k < 4; ++k) {
        const uint64_t next = left ^ (mix64(key_ ^ (right + (k + 1) * kGolden)) & mask_);
        left = right;
        right = next;
      }
      x = (left << half_) | right;
    } while (x >= n_);
    return x;
  }

 private:
  uint64_t key_, n_;
  int half_;
  uint64_t mask_;
};

// One vector's random direction in one tensor: the statistics, then r(j).
class Direction {
 public:
  Direction(uint64_t key, uint64_t n) : key_(key), shuffle_(key, n), count_(kBins, 0), sum_(kBins, 0.0) {}

  void observe(std::span<const float> delta) {
    for (const float x : delta) {
      const auto bin = (std::bit_cast<uint32_t>(x) & 0x7FFFFFFFu) >> 16;
      ++count_[bin];
      sum_[bin] += std::fabs(static_cast<double>(x));
      sum_sq_ += static_cast<double>(x) * static_cast<double>(x);
    }
  }

  // The bins that hold elements, their last rank + 1 and their value a_b · f.
  // False when a NaN or Inf made the norm not finite.
  bool finish_statistics() {
    if (!std::isfinite(sum_sq_)) return false;
    double bins_sq = 0;
    for (size_t b = 0; b < kBins; ++b) {
      if (count_[b] == 0) continue;
      const double mean = sum_[b] / static_cast<double>(count_[b]);
      bins_sq += static_cast<double>(count_[b]) * mean * mean;
    }
    const double factor = sum_sq_ == 0 || bins_sq == 0 ? 0.0 : std::sqrt(sum_sq_ / bins_sq);
    uint64_t ranks = 0;
    for (size_t b = 0; b < kBins; ++b) {
      if (count_[b] == 0) continue;
      ranks += count_[b];
      rank_ends_.push_back(ranks);
      values_.push_back(static_cast<float>(sum_[b] / static_cast<double>(count_[b]) * factor));
    }
    count_ = {};
    sum_ = {};
    return true;
  }

  // r(j) for j in [first, first + n).
  void fill(uint64_t first, float* out, size_t n) const {
    for (size_t k = 0; k < n; ++k) {
      const uint64_t j = first + k;
      const uint64_t rank = shuffle_(j);
      const auto bin = std::ranges::upper_bound(rank_ends_, rank) - rank_ends_.begin();
      const bool negative = (mix64(key_ + (j + 1) * kGolden) >> 63) != 0;
      out[k] = negative ? -values_[static_cast<size_t>(bin)] : values_[static_cast<size_t>(bin)];
    }
  }

 private:
  uint64_t key_;
  Shuffle shuffle_;
  std::vector<uint64_t> count_;
  std::vector<double> sum_;
  double sum_sq_ = 0;
  std::vector<uint64_t> rank_ends_;
  std::vector<float> values_;
};

class RandomCombiner final : public TensorCombiner {
 public:
  explicit RandomCombiner(const TensorContext& context) : tensor_(context.name), tiles_(context.vector_weights.size()) {
    for (double w : context.vector_weights) weights_.push_back(static_cast<float>(w));
    const auto seed = static_cast<uint64_t>(context.params->at("seed"));
    for (size_t i = 0; i < weights_.size(); ++i) {
      directions_.emplace_back(dare::stream_key(seed, context.name, i), context.elements);
    }
  }

  void observe(unsigned, size_t vector, uint64_t, std::span<const float> delta) override {
    directions_[vector].observe(delta);
  }

  void end_pass(unsigned) override {
    for (size_t i = 0; i < directions_.size(); ++i) {
      if (!directions_[i].finish_statistics()) fail_nonfinite_statistic(tensor_, i, "norm");
    }
  }

  const float* combine(uint64_t first, size_t n, std::span<const float* const>, float* scratch) override {
    for (size_t i = 0; i < directions_.size(); ++i) {
      tiles_[i].resize(n);
      directions_[i].fill(first, tiles_[i].data(), n);
      pointers_[i] = tiles_[i].data();
    }
    return weighted_sum(weights_, pointers_, n, false, scratch);
  }

 private:
  std::string tensor_;
  std::vector<float> weights_;
  std::vector<Direction> directions_;
  std::vector<std::vector<float>> tiles_;  // r_i of the current tile
  std::vector<const float*> pointers_ = std::vector<const float*>(tiles_.size());
};

class RandomMethod final : public MergeMethod {
 public:
  std::string_view name() const override { return "random"; }
  const std::vector<MethodParam>& params() const override {
    static const std::vector<MethodParam> params = {
        {"seed", 0, 0, 9007199254740992.0, "seed of the shuffle and the signs (docs/merging.md)", {}, false, true}};
    return params;
  }
  std::string formula() const override { return "sum_i w_i * shuffled_sign_flipped(v_i), per-tensor norm ||v_i||"; }
  unsigned statistics_passes(const TensorContext&) const override { return 1; }
  std::unique_ptr<TensorCombiner> begin_tensor(const TensorContext& context) const override {
    return std::make_unique<RandomCombiner>(context);
  }
};

}  // namespace

const MergeMethod& random_method() {
  static const RandomMethod method;
  return method;
}

}  // namespace rvec
