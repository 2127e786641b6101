#include "merge/lineage.hpp"

#include <hwy/aligned_allocator.h>

#include <algorithm>
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
    read_as_f32(t, first, std::span(values_.get(), n), raw_.get());
    bytes_read += n * dtype_bits(t.info->dtype) / 8;
    return values_.get();
  }

 private:
  hwy::AlignedFreeUniquePtr<std::byte[]> raw_;
  hwy::AlignedFreeUniquePtr<float[]> values_;
};

}  // namespace

std::string module_kind(const std::string& name) {
  if (name.find("embed_tokens") != std::string::npos) return "embeddings";
  if (name.find("lm_head") != std::string::npos) return "lm_head";
  if (name.find("norm") != std::string::npos) return "norms";
  if (name.find("q_proj") != std::string::npos) return "attn_q";
  if (name.find("k_proj") != std::string::npos) return "attn_k";
  if (name.find("v_proj") != std::string::npos) return "attn_v";
  if (name.find("o_proj") != std::string::npos) return "attn_o";
  if (name.find("mlp.") != std::string::npos) return "mlp";
  return "other";
}

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

LineageReport analyse_lineage(const MergePlan& plan, const std::vector<const ModelFolder*>& candidates,
                              const LineageProgress& progress) {
  LineageReport report;
  std::vector<kernels::DeltaSums> candidate_sums(candidates.size());
  report.candidates.resize(candidates.size());
  uint64_t bytes_total = 0;
  for (const auto& p : plan.tensors) {
    if (p.action != TensorAction::kCombine) continue;
    bytes_total += p.target->info->byte_size() + p.pre->info->byte_size() + p.post->info->byte_size();
  }
  BlockSource pre_src, post_src, target_src, cand_src;
  for (const auto& p : plan.tensors) {
    if (p.action != TensorAction::kCombine) continue;
    TensorLineage t;
    t.name = p.name();
    t.kind = module_kind(t.name);
    if (const auto layer = layer_index(t.name)) t.layer = static_cast<int64_t>(*layer);
    const uint64_t row = p.rows() == 0 ? 0 : p.target->info->element_count() / p.rows();
    const uint64_t n = p.combined_rows * row;
    // Candidates are ranked on matrices, like the verdicts.
    const bool matrix = p.target->info->shape.size() >= 2;
    std::vector<const ModelTensor*> cand_tensors;
    for (size_t c = 0; c < candidates.size() && matrix; ++c) {
      const ModelTensor* ct = candidates[c]->find_resolving_tied(t.name);
      const bool usable = ct && ct->info->shape.size() == p.post->info->shape.size() &&
                          is_arithmetic(ct->info->dtype) && ct->info->element_count() >= n &&
                          (ct->info->shape.empty() || ct->info->element_count() / std::max<uint64_t>(ct->info->shape[0], 1) == row);
      cand_tensors.push_back(usable ? ct : nullptr);
      (usable ? report.candidates[c].tensors_compared : report.candidates[c].tensors_skipped) += 1;
    }
    for (uint64_t first = 0; first < n; first += kBlockElements) {
      const size_t m = std::min<uint64_t>(kBlockElements, n - first);
      const float* pre = pre_src.load(*p.pre, first, m, report.bytes_read);
      const float* post = post_src.load(*p.post, first, m, report.bytes_read);
      const float* target = target_src.load(*p.target, first, m, report.bytes_read);
      kernels::accumulate_delta_sums(pre, post, target, m, t.stats.sums);
      for (size_t c = 0; c < cand_tensors.size(); ++c) {
        if (!cand_tensors[c]) continue;
        const float* cand = cand_src.load(*cand_tensors[c], first, m, report.bytes_read);
        kernels::accumulate_delta_sums(cand, post, nullptr, m, candidate_sums[c]);
      }
      if (progress) progress(report.bytes_read, bytes_total);
    }
    t.stats.elements = n;
    report.total.sums += t.stats.sums;
    report.total.elements += n;
    if (p.target->info->shape.size() >= 2) {
      report.matrices.sums += t.stats.sums;
      report.matrices.elements += n;
    }
    report.by_kind[t.kind].sums += t.stats.sums;
    report.by_kind[t.kind].elements += n;
    if (t.layer >= 0) {
      report.by_layer[t.layer].sums += t.stats.sums;
      report.by_layer[t.layer].elements += n;
    }
    report.tensors.push_back(std::move(t));
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
