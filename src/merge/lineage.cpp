#include "merge/lineage.hpp"

#include <hwy/aligned_allocator.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <cmath>

#include "merge/rules.hpp"

namespace rvec {
namespace {

constexpr size_t kBlockElements = 1 << 16;

double safe_ratio(double num_sq, double den_sq) { return den_sq > 0 ? std::sqrt(num_sq / den_sq) : 0.0; }

// Reads one model's view of a tensor block by block, widened to f32.
class BlockSource {
 public:
  BlockSource() : raw_(hwy::AllocateAligned<std::byte>(kBlockElements * 4)),
                  values_(hwy::AllocateAligned<float>(kBlockElements)) {}
  const float* load(const ModelTensor& t, uint64_t first, size_t n, uint64_t& bytes_read) {
    const uint64_t width = dtype_bits(t.info->dtype) / 8;
    t.file->prefetch(*t.info, (first + n) * width, kBlockElements * width);  // the next block, in the background
    read_as_f32(t, first, std::span(values_.get(), n), raw_.get());
    bytes_read += n * dtype_bits(t.info->dtype) / 8;
    return values_.get();
  }

 private:
  hwy::AlignedFreeUniquePtr<std::byte[]> raw_;
  hwy::AlignedFreeUniquePtr<float[]> values_;
};

}  // namespace

double DeltaStats::rel_post() const { return safe_ratio(sums.a_sq, sums.base_sq); }
double DeltaStats::rel_target() const { return safe_ratio(sums.b_sq, sums.base_sq); }
double DeltaStats::cosine() const {
  const double den = std::sqrt(sums.a_sq) * std::sqrt(sums.b_sq);
  return den > 0 ? sums.dot / den : 0.0;
}

std::string_view verdict_name(LineageVerdict verdict) {
  switch (verdict) {
    case LineageVerdict::kFineTune: return "fine-tune";
    case LineageVerdict::kSuspicious: return "suspicious";
    case LineageVerdict::kUnrelated: return "unrelated";
  }
  return "?";
}

LineageVerdict classify(double rel) {
  if (rel > kUnrelatedMinRel) return LineageVerdict::kUnrelated;
  if (rel > kFineTuneMaxRel) return LineageVerdict::kSuspicious;
  return LineageVerdict::kFineTune;
}

namespace {

// One tensor's share of the work: its statistics and, per candidate, the sums
// for ||post - candidate||. Filled by whichever worker takes it.
struct TensorWork {
  const TensorPlan* plan;
  uint64_t elements = 0;
  std::vector<const ModelTensor*> candidates;  // null: not comparable
  TensorLineage result;
  std::vector<kernels::DeltaSums> candidate_sums;
};

void analyse_tensor(TensorWork& w, std::atomic<uint64_t>& bytes_read) {
  thread_local BlockSource pre_src, post_src, target_src, cand_src;
  const TensorPlan& p = *w.plan;
  uint64_t read = 0;
  for (uint64_t first = 0; first < w.elements; first += kBlockElements) {
    const size_t m = std::min<uint64_t>(kBlockElements, w.elements - first);
    const float* pre = pre_src.load(*p.pre, first, m, read);
    const float* post = post_src.load(*p.post, first, m, read);
    const float* target = target_src.load(*p.target, first, m, read);
    kernels::accumulate_delta_sums(pre, post, target, m, w.result.stats.sums);
    for (size_t c = 0; c < w.candidates.size(); ++c) {
      if (!w.candidates[c]) continue;
      const float* cand = cand_src.load(*w.candidates[c], first, m, read);
      kernels::accumulate_delta_sums(cand, post, nullptr, m, w.candidate_sums[c]);
    }
    bytes_read += read;
    read = 0;
  }
  w.result.stats.elements = w.elements;
}

}  // namespace

LineageReport analyse_lineage(const MergePlan& plan, const std::vector<const ModelFolder*>& candidates,
                              const LineageProgress& progress) {
  LineageReport report;
  report.candidates.resize(candidates.size());
  std::vector<TensorWork> work;
  uint64_t bytes_total = 0;
  for (const auto& p : plan.tensors) {
    if (p.action != TensorAction::kCombine) continue;
    TensorWork w{&p};
    w.result.name = p.name();
    w.result.kind = module_kind_name(module_kind(p.name()));
    if (const auto layer = layer_index(p.name())) w.result.layer = static_cast<int64_t>(*layer);
    const uint64_t row = p.rows() == 0 ? 0 : p.target->info->element_count() / p.rows();
    w.elements = p.combined_rows * row;
    // Candidates are ranked on matrices, like the verdicts.
    const bool matrix = p.target->info->shape.size() >= 2;
    for (size_t c = 0; c < candidates.size() && matrix; ++c) {
      const ModelTensor* ct = candidates[c]->find_resolving_tied(p.name());
      const bool usable = ct && ct->info->shape.size() == p.post->info->shape.size() &&
                          is_arithmetic(ct->info->dtype) && ct->info->element_count() >= w.elements &&
                          (ct->info->shape.empty() || ct->info->element_count() / std::max<uint64_t>(ct->info->shape[0], 1) == row);
      w.candidates.push_back(usable ? ct : nullptr);
      (usable ? report.candidates[c].tensors_compared : report.candidates[c].tensors_skipped) += 1;
      if (usable) bytes_total += ct->info->byte_size();
    }
    w.candidate_sums.resize(w.candidates.size());
    bytes_total += p.target->info->byte_size() + p.pre->info->byte_size() + p.post->info->byte_size();
    work.push_back(std::move(w));
  }

  // Tensors are shared out to the cores; each tensor's sums come from one
  // thread and are combined below in plan order, so results do not depend on
  // the number of threads. The calling thread works too and reports progress.
  std::atomic<size_t> next{0};
  std::atomic<uint64_t> bytes_read{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  // Takes tensors until none are left; the first error stops every worker.
  const auto worker = [&](bool reports) {
    try {
      for (size_t i; (i = next.fetch_add(1)) < work.size();) {
        analyse_tensor(work[i], bytes_read);
        if (reports && progress) progress(bytes_read.load(), bytes_total);
      }
    } catch (...) {
      std::lock_guard lock(error_mutex);
      if (!error) error = std::current_exception();
      next = work.size();
    }
  };
  const unsigned threads = std::clamp(std::thread::hardware_concurrency(), 1u, 4u);
  std::vector<std::thread> helpers;
  for (unsigned t = 1; t < threads; ++t) helpers.emplace_back(worker, false);
  worker(true);
  for (auto& h : helpers) h.join();
  if (error) std::rethrow_exception(error);
  report.bytes_read = bytes_read;

  std::vector<kernels::DeltaSums> candidate_sums(candidates.size());
  for (auto& w : work) {
    const DeltaStats& s = w.result.stats;
    report.total.sums += s.sums;
    report.total.elements += s.elements;
    if (w.plan->target->info->shape.size() >= 2) {
      report.matrices.sums += s.sums;
      report.matrices.elements += s.elements;
    }
    report.by_kind[w.result.kind].sums += s.sums;
    report.by_kind[w.result.kind].elements += s.elements;
    if (w.result.layer >= 0) {
      report.by_layer[w.result.layer].sums += s.sums;
      report.by_layer[w.result.layer].elements += s.elements;
    }
    for (size_t c = 0; c < w.candidate_sums.size(); ++c) candidate_sums[c] += w.candidate_sums[c];
    report.tensors.push_back(std::move(w.result));
  }
  for (size_t c = 0; c < candidates.size(); ++c) {
    report.candidates[c].path = candidates[c]->path();
    report.candidates[c].rel_post = safe_ratio(candidate_sums[c].a_sq, candidate_sums[c].base_sq);
  }
  std::stable_sort(report.candidates.begin(), report.candidates.end(),
                   [](const auto& a, const auto& b) { return a.rel_post < b.rel_post; });
  const DeltaStats& basis = report.matrices.elements > 0 ? report.matrices : report.total;
  report.post_verdict = classify(basis.rel_post());
  report.target_verdict = classify(basis.rel_target());
  report.deltas_overlap = basis.cosine() > kOverlapCosine;
  return report;
}

}  // namespace rvec
