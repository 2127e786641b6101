// Statistics of a reasoning vector (a folder from `rvec extract`, or
// post - pre computed on the fly): norm per layer and module kind, share of
// the total, sparsity at several magnitudes, and, given a second vector, the
// per-layer cosine between the two. One streaming pass, bounded memory.
#pragma once

#include <array>
#include <map>
#include <string>
#include <vector>

#include "hf/model_folder.hpp"

namespace rvec {

// |v| <= threshold counts as "zero" at that threshold.
inline constexpr std::array<double, 4> kSparsityThresholds = {1e-6, 1e-5, 1e-4, 1e-3};

struct VectorStats {
  double sum_sq = 0;        // ||v||^2
  double other_sq = 0;      // ||u||^2 of the second vector, if any
  double dot = 0;           // <v, u>
  uint64_t elements = 0;
  std::array<uint64_t, kSparsityThresholds.size()> below{};  // elements with |v| <= threshold
  VectorStats& operator+=(const VectorStats& o);
  double norm() const;
  double cosine() const;  // with the second vector; 0 when either is 0
};

struct VectorReport {
  std::vector<std::pair<std::string, VectorStats>> tensors;
  std::map<std::string, VectorStats> by_kind;
  std::map<int64_t, VectorStats> by_layer;
  VectorStats total;
  bool compared = false;  // a second vector was given
};

// A vector as streams of f32 blocks: either a saved vector folder, or post
// minus pre. Tensors are matched by name (embedding rows: the shared ones).
struct VectorSource {
  const ModelFolder* vector = nullptr;  // a saved vector, or post when `pre` is set
  const ModelFolder* pre = nullptr;
};

VectorReport analyse_vector(const VectorSource& first, const VectorSource* second = nullptr);

// A compact SVG bar chart of per-layer norms (and the cosine, when compared).
std::string layer_norms_svg(const VectorReport& report, const std::string& title);

}  // namespace rvec
