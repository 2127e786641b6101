#include "merge/vector_stats.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <memory>

#include "base/error.hpp"
#include "base/thread_pool.hpp"
#include "hf/tensor_reader.hpp"
#include "numeric/kernels.hpp"

namespace rvec {
namespace {

constexpr size_t kBlockElements = 1 << 16;

// Produces f32 blocks of one tensor of a VectorSource.
class VectorReader {
 public:
  explicit VectorReader(const VectorSource& source) : source_(source) {}

  // Elements available for `name` (the rows all inputs share), or 0 if absent.
  uint64_t elements(const std::string& name) const {
    const ModelTensor* v = source_.vector->find_resolving_tied(name);
    if (!v || !is_arithmetic(v->info->dtype)) return 0;
    uint64_t n = v->info->element_count();
    if (source_.pre) {
      const ModelTensor* p = source_.pre->find_resolving_tied(name);
      if (!p || !is_arithmetic(p->info->dtype) || p->info->shape.size() != v->info->shape.size()) return 0;
      n = std::min(n, p->info->element_count());
    }
    return n;
  }

  // The vector's values for elements [first, first + n): valid until the next load().
  const float* load(const std::string& name, uint64_t first, size_t n) {
    float* values = vector_.read_f32(*source_.vector->find_resolving_tied(name), first, n);
    if (source_.pre) {
      const float* minus = pre_.read_f32(*source_.pre->find_resolving_tied(name), first, n);
      kernels::subtract(values, minus, values, n);
    }
    return values;
  }

 private:
  VectorSource source_;
  TensorBlockReader vector_{kBlockElements};
  TensorBlockReader pre_{kBlockElements};
};

void accumulate(const float* v, const float* u, size_t n, VectorStats& s) {
  kernels::DeltaSums sums;  // with pre = 0: a_sq = ||v||^2, b_sq = ||u||^2, dot = <v, u>
  static const std::vector<float> zeros(kBlockElements, 0.0f);
  kernels::accumulate_delta_sums(zeros.data(), v, u, n, sums);
  s.sum_sq += sums.a_sq;
  s.other_sq += sums.b_sq;
  s.dot += sums.dot;
  s.elements += n;
  static const std::array<int32_t, kSparsityThresholds.size()> at_most = [] {
    std::array<int32_t, kSparsityThresholds.size()> bits{};
    for (size_t t = 0; t < bits.size(); ++t) bits[t] = std::bit_cast<int32_t>(static_cast<float>(kSparsityThresholds[t]));
    return bits;
  }();
  kernels::count_at_most(v, n, at_most.data(), at_most.size(), s.below.data());
}

// The sums of one tensor (no elements: absent or not comparable).
VectorStats tensor_stats(const std::string& name, VectorReader& a, VectorReader* b) {
  uint64_t n = a.elements(name);
  if (b) n = std::min(n, b->elements(name));
  VectorStats stats;
  for (uint64_t offset = 0; offset < n; offset += kBlockElements) {
    const size_t m = std::min<uint64_t>(kBlockElements, n - offset);
    const float* v = a.load(name, offset, m);
    const float* u = b ? b->load(name, offset, m) : nullptr;
    accumulate(v, u, m, stats);
  }
  return stats;
}

}  // namespace

VectorStats& VectorStats::operator+=(const VectorStats& o) {
  sum_sq += o.sum_sq, other_sq += o.other_sq, dot += o.dot, elements += o.elements;
  for (size_t t = 0; t < below.size(); ++t) below[t] += o.below[t];
  return *this;
}

double VectorStats::norm() const { return std::sqrt(sum_sq); }

double VectorStats::cosine() const {
  const double den = std::sqrt(sum_sq) * std::sqrt(other_sq);
  return den > 0 ? dot / den : 0.0;
}

// Tensors are shared out to the cores, each tensor's sums from one thread,
// combined in the vector's tensor order: results do not depend on the number
// of threads.
VectorReport analyse_vector(const VectorSource& first, const VectorSource* second) {
  const auto& tensors = first.vector->tensors();
  std::vector<VectorStats> per_tensor(tensors.size());
  ThreadPool pool(std::min(default_thread_count(), kMaxReadingThreads));
  std::vector<std::unique_ptr<VectorReader>> readers(pool.size()), others(pool.size());
  pool.parallel_for_workers(tensors.size(), [&](size_t worker, size_t i) {
    if (!readers[worker]) readers[worker] = std::make_unique<VectorReader>(first);
    if (second && !others[worker]) others[worker] = std::make_unique<VectorReader>(*second);
    per_tensor[i] = tensor_stats(tensors[i].name(), *readers[worker], others[worker].get());
  });
  VectorReport report;
  report.compared = second != nullptr;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const VectorStats& stats = per_tensor[i];
    if (stats.elements == 0) continue;
    const std::string& name = tensors[i].name();
    report.total += stats;
    report.by_kind[std::string(module_kind_name(module_kind(name)))] += stats;
    if (const auto layer = layer_index(name)) report.by_layer[static_cast<int64_t>(*layer)] += stats;
    report.tensors.emplace_back(name, stats);
  }
  if (report.tensors.empty()) bad_input("{}: no tensor to analyse", first.vector->path());
  return report;
}

std::string layer_norms_svg(const VectorReport& r, const std::string& title) {
  constexpr int kWidth = 720, kHeight = 300, kLeft = 60, kRight = 60, kTop = 40, kBottom = 40;
  const int plot_w = kWidth - kLeft - kRight, plot_h = kHeight - kTop - kBottom;
  double max_norm = 0;
  for (const auto& [layer, s] : r.by_layer) max_norm = std::max(max_norm, s.norm());
  if (max_norm <= 0) max_norm = 1;
  const size_t n = std::max<size_t>(r.by_layer.size(), 1);
  const double bar = static_cast<double>(plot_w) / static_cast<double>(n);
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"22\" font-size=\"15\">{3}</text>\n",
      kWidth, kHeight, kLeft, title);
  svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"black\"/>\n", kLeft, kTop, kTop + plot_h);
  svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"black\"/>\n", kLeft, kTop + plot_h,
                     kLeft + plot_w);
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.3g}</text>\n", kLeft - 4, kTop + 4, max_norm);
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>\n", kLeft - 4, kTop + plot_h);
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">layer</text>\n", kLeft + plot_w / 2, kHeight - 8);
  svg += fmt::format("<text x=\"14\" y=\"{0}\" transform=\"rotate(-90 14 {0})\" text-anchor=\"middle\">||v|| per layer</text>\n",
                     kTop + plot_h / 2);
  size_t i = 0;
  std::string cosine_points;
  for (const auto& [layer, s] : r.by_layer) {
    const double h = s.norm() / max_norm * plot_h;
    const double x = kLeft + static_cast<double>(i) * bar;
    svg += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"#4477aa\"><title>layer {}: "
                       "{:.4g}</title></rect>\n",
                       x + bar * 0.1, kTop + plot_h - h, bar * 0.8, h, layer, s.norm());
    if (n <= 32 || layer % 8 == 0) {
      svg += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", x + bar / 2,
                         kTop + plot_h + 14, layer);
    }
    if (r.compared) {
      const double y = kTop + plot_h * (1 - (s.cosine() + 1) / 2);
      cosine_points += fmt::format("{:.1f},{:.1f} ", x + bar / 2, y);
    }
    ++i;
  }
  if (r.compared) {
    svg += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"#cc6677\" stroke-width=\"2\"/>\n", cosine_points);
    svg += fmt::format("<text x=\"{0}\" y=\"{1}\" fill=\"#cc6677\">cos +1</text><text x=\"{0}\" y=\"{2}\" "
                       "fill=\"#cc6677\">cos -1</text>\n",
                       kLeft + plot_w + 4, kTop + 4, kTop + plot_h);
  }
  return svg + "</svg>\n";
}

}  // namespace rvec
