#include "merge/lineage.hpp"

#include <algorithm>
#include <cmath>
#include <mutex>

#include "base/thread_pool.hpp"
#include "hf/tensor_reader.hpp"

namespace rvec {
namespace {

constexpr size_t kBlockElements = 1 << 16;
constexpr const char* kRoleNames[3] = {"pre", "post", "target"};

double safe_ratio(double num_sq, double den_sq) { return den_sq > 0 ? std::sqrt(num_sq / den_sq) : 0.0; }

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
    case LineageVerdict::kNonFinite: return "non-finite";
  }
  return "?";
}

LineageVerdict classify(double rel) {
  if (!std::isfinite(rel)) return LineageVerdict::kNonFinite;
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
  uint64_t nonfinite[3] = {};  // in pre, post, target
};

// One thread's readers, one per input role.
struct Readers {
  TensorBlockReader pre{kBlockElements}, post{kBlockElements}, target{kBlockElements}, candidate{kBlockElements};
  uint64_t bytes_read() const {
    return pre.bytes_read() + post.bytes_read() + target.bytes_read() + candidate.bytes_read();
  }
};

// Returns the bytes read.
uint64_t analyse_tensor(TensorWork& w, Readers& r) {
  const uint64_t before = r.bytes_read();
  const TensorPlan& p = *w.plan;
  for (uint64_t first = 0; first < w.elements; first += kBlockElements) {
    const size_t m = std::min<uint64_t>(kBlockElements, w.elements - first);
    const float* pre = r.pre.read_f32(*p.pre, first, m);
    const float* post = r.post.read_f32(*p.post, first, m);
    const float* target = r.target.read_f32(*p.target, first, m);
    kernels::accumulate_delta_sums(pre, post, target, m, w.result.stats.sums);
    for (const auto& [role, values] : {std::pair{0, pre}, std::pair{1, post}, std::pair{2, target}}) {
      w.nonfinite[role] += kernels::count_nonfinite(values, m);
    }
    for (size_t c = 0; c < w.candidates.size(); ++c) {
      if (!w.candidates[c]) continue;
      const float* cand = r.candidate.read_f32(*w.candidates[c], first, m);
      kernels::accumulate_delta_sums(cand, post, nullptr, m, w.candidate_sums[c]);
    }
  }
  w.result.stats.elements = w.elements;
  return r.bytes_read() - before;
}

// Tensors are shared out to the cores; each tensor's sums come from one
// thread and are combined in plan order by the caller, so results do not
// depend on the number of threads. Returns the bytes read.
uint64_t stream_tensors(std::vector<TensorWork>& work, uint64_t bytes_total, const LineageProgress& progress) {
  ThreadPool pool(std::min(default_thread_count(), kMaxReadingThreads));
  std::vector<Readers> readers(pool.size());
  std::mutex progress_mutex;
  uint64_t bytes_read = 0;
  pool.parallel_for_workers(work.size(), [&](size_t worker, size_t i) {
    const uint64_t read = analyse_tensor(work[i], readers[worker]);
    const std::lock_guard lock(progress_mutex);
    bytes_read += read;
    if (progress) progress(bytes_read, bytes_total);
  });
  return bytes_read;
}

// The tensors to stream: those the plan combines, each with the candidates'
// tensors comparable to it. Counts compared/skipped tensors per candidate.
std::vector<TensorWork> plan_work(const MergePlan& plan, const std::vector<const ModelFolder*>& candidates,
                                  LineageReport& report, uint64_t& bytes_total) {
  std::vector<TensorWork> work;
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
  return work;
}

void add(DeltaStats& into, const DeltaStats& s) {
  into.sums += s.sums;
  into.elements += s.elements;
}

// Per-tensor results summed by module kind, layer, matrices and in all, in plan order.
void combine_results(std::vector<TensorWork>& work, const std::vector<const ModelFolder*>& candidates,
                     LineageReport& report) {
  std::vector<kernels::DeltaSums> candidate_sums(candidates.size());
  for (auto& w : work) {
    const DeltaStats& s = w.result.stats;
    add(report.total, s);
    if (w.plan->target->info->shape.size() >= 2) add(report.matrices, s);
    add(report.by_kind[w.result.kind], s);
    if (w.result.layer >= 0) add(report.by_layer[w.result.layer], s);
    for (size_t c = 0; c < w.candidate_sums.size(); ++c) candidate_sums[c] += w.candidate_sums[c];
    for (size_t role = 0; role < 3; ++role) {
      if (w.nonfinite[role] == 0) continue;
      NonfiniteWeights& bad = report.nonfinite[kRoleNames[role]];
      if (bad.count == 0) bad.first_tensor = w.result.name;
      bad.count += w.nonfinite[role];
    }
    report.tensors.push_back(std::move(w.result));
  }
  for (size_t c = 0; c < candidates.size(); ++c) {
    report.candidates[c].path = candidates[c]->path();
    report.candidates[c].rel_post = safe_ratio(candidate_sums[c].a_sq, candidate_sums[c].base_sq);
  }
  std::stable_sort(report.candidates.begin(), report.candidates.end(),
                   [](const auto& a, const auto& b) { return a.rel_post < b.rel_post; });
}

void decide_verdicts(LineageReport& report) {
  const DeltaStats& basis = report.matrices.elements > 0 ? report.matrices : report.total;
  report.post_verdict = classify(basis.rel_post());
  report.target_verdict = classify(basis.rel_target());
  report.deltas_overlap = basis.cosine() > kOverlapCosine;
}

}  // namespace

LineageReport analyse_lineage(const MergePlan& plan, const std::vector<const ModelFolder*>& candidates,
                              const LineageProgress& progress) {
  LineageReport report;
  report.candidates.resize(candidates.size());
  uint64_t bytes_total = 0;
  std::vector<TensorWork> work = plan_work(plan, candidates, report, bytes_total);
  report.bytes_read = stream_tensors(work, bytes_total, progress);
  combine_results(work, candidates, report);
  decide_verdicts(report);
  return report;
}

}  // namespace rvec
