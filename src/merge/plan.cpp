#include "merge/plan.hpp"

#include <fmt/format.h>

#include <set>
#include <tuple>
#include <vector>

#include "base/text.hpp"

namespace rvec {
namespace {

std::string role(const std::string& name, const ModelFolder& model) { return fmt::format("{} ({})", name, model.path()); }

struct Source {
  std::string role;
  const ModelFolder* model;
};

class Planner {
 public:
  explicit Planner(const MergeInputs& m) : m_(m) {
    if (m_.pre) sources_.push_back({m_.pre_role, m_.pre});
    sources_.push_back({m_.post_role, &m_.post});
    all_ = sources_;
    all_.push_back({m_.target_role, &m_.target});
  }

  MergePlan run() {
    compare_configs();
    compare_tying();
    for (const auto& t : m_.target.tensors()) plan_tensor(t);
    for (const auto& source : sources_) report_extra_tensors(*source.model, source.role);
    return std::move(plan_);
  }

 private:
  void add(Severity severity, std::string subject, std::string message) {
    plan_.findings.push_back({severity, std::move(subject), std::move(message)});
  }

  // Compares one config field across all models; reports the first pair that differs.
  template <typename Get>
  void compare_field(const char* field, Get get, Severity severity, const char* consequence) {
    for (size_t i = 0; i < all_.size(); ++i) {
      const auto a = get(*all_[i].model->config());
      if (!a) continue;
      for (size_t j = i + 1; j < all_.size(); ++j) {
        const auto b = get(*all_[j].model->config());
        if (b && *a != *b) {
          add(severity, "config.json",
              fmt::format("field \"{}\" differs: {} {} = {}, {} {} = {}{}", field, all_[i].role,
                          all_[i].model->path(), *a, all_[j].role, all_[j].model->path(), *b, consequence));
          return;
        }
      }
    }
  }

  void compare_configs() {
    bool all_configs = true;
    for (const auto& source : all_) {
      if (!source.model->config()) {
        add(Severity::kWarning, role(source.role, *source.model), "no config.json; architecture fields not checked");
        all_configs = false;
      }
    }
    if (!all_configs) return;
    constexpr const char* kMustMatch = " (the models are not the same architecture)";
    compare_field("architectures", [](const ModelConfig& c) { return std::optional(c.architecture()); },
                  Severity::kError, kMustMatch);
    compare_field("hidden_size", [](const ModelConfig& c) { return c.hidden_size; }, Severity::kError, kMustMatch);
    compare_field("num_hidden_layers", [](const ModelConfig& c) { return c.num_hidden_layers; }, Severity::kError,
                  kMustMatch);
    compare_field("num_attention_heads", [](const ModelConfig& c) { return c.num_attention_heads; },
                  Severity::kError, kMustMatch);
    compare_field("num_key_value_heads", [](const ModelConfig& c) { return c.num_key_value_heads; },
                  Severity::kError, kMustMatch);
    compare_field("head_dim", [](const ModelConfig& c) { return c.head_dim; }, Severity::kError, kMustMatch);
    compare_field("intermediate_size", [](const ModelConfig& c) { return c.intermediate_size; }, Severity::kError,
                  kMustMatch);
    compare_field("rope_theta", [](const ModelConfig& c) { return c.rope_theta; }, Severity::kWarning,
                  " (the output keeps the target's)");
    compare_field("rms_norm_eps", [](const ModelConfig& c) { return c.rms_norm_eps; }, Severity::kWarning,
                  " (the output keeps the target's)");
    compare_field("vocab_size", [](const ModelConfig& c) { return c.vocab_size; }, Severity::kNote,
                  " (embedding rows are matched as described below)");
  }

  void compare_tying() {
    bool sources_tied = true, any_source_tied = false;
    for (const auto& source : sources_) {
      sources_tied = sources_tied && source.model->tied_embeddings();
      any_source_tied = any_source_tied || source.model->tied_embeddings();
    }
    const bool target = m_.target.tied_embeddings();
    if (target && !sources_tied) {
      add(Severity::kWarning, role(m_.target_role, m_.target),
          "ties lm_head to the embedding but pre or post has its own lm_head; the output stays tied, so "
          "post's lm_head change is dropped (only the embedding delta is applied)");
    } else if (!target && any_source_tied) {
      add(Severity::kNote, role(m_.target_role, m_.target),
          "has its own lm_head while pre or post ties it to the embedding; their embedding stands in for their "
          "lm_head when computing the lm_head delta");
    }
  }

  void plan_tensor(const ModelTensor& t) {
    TensorPlan p;
    p.target = &t;
    p.combined_rows = p.rows();
    const TensorInfo& info = *t.info;
    const std::string subject = fmt::format("tensor \"{}\"", printable(t.name()));
    if (!is_arithmetic(info.dtype)) {
      if (is_floating(info.dtype)) {
        add(Severity::kError, subject,
            fmt::format("target ({}) stores it as {}, which rvec cannot do arithmetic on (quantised or F64/C64 "
                        "weights must be dequantised to BF16/F16/F32 first)",
                        m_.target.path(), dtype_name(info.dtype)));
      } else {
        p.note = fmt::format("{} tensor copied from target", dtype_name(info.dtype));
      }
      plan_.tensors.push_back(std::move(p));
      return;
    }
    const ModelTensor* pre = m_.pre ? m_.pre->find_resolving_tied(t.name()) : nullptr;
    const ModelTensor* post = m_.post.find_resolving_tied(t.name());
    bool ok = true;
    for (const auto& source : sources_) {
      const ModelTensor* found = source.model->find_resolving_tied(t.name());
      if (found == nullptr) {
        add(Severity::kError, subject,
            fmt::format("is in {} but missing from {}", m_.target_role, role(source.role, *source.model)));
        ok = false;
        continue;
      }
      const TensorInfo& other = *found->info;
      const bool vector = source.model == &m_.post && m_.post_dtype_may_differ;
      if (other.dtype != info.dtype && !(vector && is_arithmetic(other.dtype))) {
        add(Severity::kError, subject,
            fmt::format("dtype differs: {} {} vs {} {}", m_.target_role, dtype_name(info.dtype),
                        role(source.role, *source.model), dtype_name(other.dtype)));
        ok = false;
      }
      if (other.shape != info.shape && !rows_differ_only(t.name(), info, other)) {
        add(Severity::kError, subject,
            fmt::format("shape differs: {} {} vs {} {}", m_.target_role, shape_string(info.shape),
                        role(source.role, *source.model), shape_string(other.shape)));
        ok = false;
      }
      if (other.shape.size() == info.shape.size() && !other.shape.empty()) {
        p.combined_rows = std::min(p.combined_rows, other.shape[0]);
      }
    }
    if (!ok) {
      plan_.tensors.push_back(std::move(p));
      return;
    }
    p.pre = pre;
    p.post = post;
    p.action = TensorAction::kCombine;
    const bool shapes_differ = (pre && pre->info->shape != info.shape) || post->info->shape != info.shape;
    if (shapes_differ) {
      std::string rows;
      for (const auto& source : all_) {
        const ModelTensor* found = source.model->find_resolving_tied(t.name());
        rows += fmt::format("{}{} {}", rows.empty() ? "" : ", ", source.role, found->info->shape[0]);
      }
      p.note = p.combined_rows != p.rows()
                   ? fmt::format("rows differ ({}): the vector is applied to the first {} rows; the {}'s other {} rows "
                                 "are kept unchanged",
                                 rows, p.combined_rows, m_.target_role, p.rows() - p.combined_rows)
                   : fmt::format("rows differ ({}): the vector is applied to all {} {} rows", rows, p.rows(),
                                 m_.target_role);
      add(Severity::kNote, subject, p.note);
    }
    plan_.tensors.push_back(std::move(p));
  }

  static bool rows_differ_only(std::string_view name, const TensorInfo& a, const TensorInfo& b) {
    return is_vocab_tensor(name) && a.shape.size() == 2 && b.shape.size() == 2 && a.shape[1] == b.shape[1];
  }

  void report_extra_tensors(const ModelFolder& model, const std::string& name) {
    for (const auto& t : model.tensors()) {
      if (m_.target.find_resolving_tied(t.name()) != nullptr) continue;
      if (t.name() == kLmHeadName && m_.target.tied_embeddings()) continue;  // reported by compare_tying
      add(Severity::kError, fmt::format("tensor \"{}\"", printable(t.name())),
          fmt::format("is in {} but missing from {} ({})", role(name, model), m_.target_role, m_.target.path()));
    }
  }

  const MergeInputs& m_;
  std::vector<Source> sources_;  // pre (if any) and post: what the vector is made of
  std::vector<Source> all_;      // sources_ and the target
  MergePlan plan_;
};

}  // namespace

std::string_view severity_name(Severity severity) {
  switch (severity) {
    case Severity::kError: return "error";
    case Severity::kWarning: return "warning";
    case Severity::kNote: return "note";
  }
  return "?";
}

bool MergePlan::compatible() const { return count(Severity::kError) == 0; }

size_t MergePlan::count(Severity severity) const {
  size_t n = 0;
  for (const auto& f : findings) n += f.severity == severity;
  return n;
}

MergePlan plan_merge(const MergeInputs& models) { return Planner(models).run(); }

MergePlan join_plans(const std::vector<MergePlan>& plans) {
  MergePlan joined = plans.front();
  std::set<std::tuple<Severity, std::string, std::string>> seen;
  joined.findings.clear();
  for (const auto& plan : plans) {
    for (const auto& f : plan.findings) {
      if (seen.emplace(f.severity, f.subject, f.message).second) joined.findings.push_back(f);
    }
  }
  for (size_t i = 0; i < joined.tensors.size(); ++i) {
    TensorPlan& t = joined.tensors[i];
    for (const auto& plan : plans) {
      const TensorPlan& other = plan.tensors[i];
      if (other.action != TensorAction::kCombine) {
        t.action = other.action;
        t.pre = t.post = nullptr;
      }
      t.combined_rows = std::min(t.combined_rows, other.combined_rows);
      if (t.note.empty()) t.note = other.note;
    }
  }
  return joined;
}

uint64_t output_tensor_bytes(const ModelFolder& target) {
  uint64_t bytes = 0;
  for (const auto& shard : target.shards()) bytes += shard->file_size();
  return bytes;
}

}  // namespace rvec
