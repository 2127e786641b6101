#include "merge/plan.hpp"

#include <fmt/format.h>

#include <set>

#include "base/text.hpp"

namespace rvec {
namespace {

std::string role(const char* name, const ModelFolder& model) { return fmt::format("{} ({})", name, model.path()); }

bool is_vocab_tensor(std::string_view name) { return name == kEmbedName || name == kLmHeadName; }

class Planner {
 public:
  explicit Planner(const MergeInputs& m) : m_(m) {}

  MergePlan run() {
    compare_configs();
    compare_tying();
    for (const auto& t : m_.target.tensors()) plan_tensor(t);
    report_extra_tensors(m_.pre, "pre");
    report_extra_tensors(m_.post, "post");
    return std::move(plan_);
  }

 private:
  void add(Severity severity, std::string subject, std::string message) {
    plan_.findings.push_back({severity, std::move(subject), std::move(message)});
  }

  template <typename T>
  void compare_field(const char* field, const std::optional<T>& pre, const std::optional<T>& post,
                     const std::optional<T>& target, Severity severity, const char* consequence) {
    const std::optional<T>* values[] = {&pre, &post, &target};
    const char* names[] = {"pre", "post", "target"};
    for (int i = 0; i < 3; ++i) {
      if (!values[i]->has_value()) continue;
      for (int j = i + 1; j < 3; ++j) {
        if (values[j]->has_value() && **values[i] != **values[j]) {
          add(severity, "config.json",
              fmt::format("field \"{}\" differs: {} {} = {}, {} {} = {}{}", field, names[i],
                          role_path(i), **values[i], names[j], role_path(j), **values[j], consequence));
          return;
        }
      }
    }
  }

  const std::string& role_path(int i) const {
    const ModelFolder* models[] = {&m_.pre, &m_.post, &m_.target};
    return models[i]->path();
  }

  void compare_configs() {
    const ModelFolder* models[] = {&m_.pre, &m_.post, &m_.target};
    const char* names[] = {"pre", "post", "target"};
    for (int i = 0; i < 3; ++i) {
      if (!models[i]->config()) {
        add(Severity::kWarning, role(names[i], *models[i]), "no config.json; architecture fields not checked");
      }
    }
    if (!m_.pre.config() || !m_.post.config() || !m_.target.config()) return;
    const ModelConfig& a = *m_.pre.config();
    const ModelConfig& b = *m_.post.config();
    const ModelConfig& c = *m_.target.config();
    auto arch = [](const ModelConfig& x) { return std::optional<std::string>(x.architecture()); };
    constexpr const char* kMustMatch = " (the models are not the same architecture)";
    compare_field("architectures", arch(a), arch(b), arch(c), Severity::kError, kMustMatch);
    compare_field("hidden_size", a.hidden_size, b.hidden_size, c.hidden_size, Severity::kError, kMustMatch);
    compare_field("num_hidden_layers", a.num_hidden_layers, b.num_hidden_layers, c.num_hidden_layers,
                  Severity::kError, kMustMatch);
    compare_field("num_attention_heads", a.num_attention_heads, b.num_attention_heads, c.num_attention_heads,
                  Severity::kError, kMustMatch);
    compare_field("num_key_value_heads", a.num_key_value_heads, b.num_key_value_heads, c.num_key_value_heads,
                  Severity::kError, kMustMatch);
    compare_field("head_dim", a.head_dim, b.head_dim, c.head_dim, Severity::kError, kMustMatch);
    compare_field("intermediate_size", a.intermediate_size, b.intermediate_size, c.intermediate_size,
                  Severity::kError, kMustMatch);
    compare_field("rope_theta", a.rope_theta, b.rope_theta, c.rope_theta, Severity::kWarning,
                  " (the output keeps the target's)");
    compare_field("rms_norm_eps", a.rms_norm_eps, b.rms_norm_eps, c.rms_norm_eps, Severity::kWarning,
                  " (the output keeps the target's)");
    compare_field("vocab_size", a.vocab_size, b.vocab_size, c.vocab_size, Severity::kNote,
                  " (embedding rows are matched as described below)");
  }

  void compare_tying() {
    const bool pre = m_.pre.tied_embeddings(), post = m_.post.tied_embeddings(), target = m_.target.tied_embeddings();
    if (target && (!pre || !post)) {
      add(Severity::kWarning, role("target", m_.target),
          "ties lm_head to the embedding but pre or post has its own lm_head; the output stays tied, so "
          "post's lm_head change is dropped (only the embedding delta is applied)");
    } else if (!target && (pre || post)) {
      add(Severity::kNote, role("target", m_.target),
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
    const ModelTensor* pre = m_.pre.find_resolving_tied(t.name());
    const ModelTensor* post = m_.post.find_resolving_tied(t.name());
    bool ok = true;
    for (auto [model, name, found] : {std::tuple{&m_.pre, "pre", pre}, std::tuple{&m_.post, "post", post}}) {
      if (found == nullptr) {
        add(Severity::kError, subject, fmt::format("is in target but missing from {}", role(name, *model)));
        ok = false;
        continue;
      }
      const TensorInfo& other = *found->info;
      if (other.dtype != info.dtype) {
        add(Severity::kError, subject,
            fmt::format("dtype differs: target {} vs {} {}", dtype_name(info.dtype), role(name, *model),
                        dtype_name(other.dtype)));
        ok = false;
      }
      if (other.shape != info.shape && !rows_differ_only(t.name(), info, other)) {
        add(Severity::kError, subject,
            fmt::format("shape differs: target {} vs {} {}", shape_string(info.shape), role(name, *model),
                        shape_string(other.shape)));
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
    if (p.combined_rows != p.rows()) {
      p.note = fmt::format("rows differ (pre {}, post {}, target {}): the vector is applied to the first {} rows; "
                           "the target's other {} rows are kept unchanged",
                           pre->info->shape[0], post->info->shape[0], p.rows(), p.combined_rows,
                           p.rows() - p.combined_rows);
      add(Severity::kNote, subject, p.note);
    } else if (pre->info->shape != info.shape || post->info->shape != info.shape) {
      p.note = fmt::format("rows differ (pre {}, post {}, target {}): the vector is applied to all {} target rows",
                           pre->info->shape[0], post->info->shape[0], p.rows(), p.rows());
      add(Severity::kNote, subject, p.note);
    }
    plan_.tensors.push_back(std::move(p));
  }

  static bool rows_differ_only(std::string_view name, const TensorInfo& a, const TensorInfo& b) {
    return is_vocab_tensor(name) && a.shape.size() == 2 && b.shape.size() == 2 && a.shape[1] == b.shape[1];
  }

  void report_extra_tensors(const ModelFolder& model, const char* name) {
    for (const auto& t : model.tensors()) {
      if (m_.target.find_resolving_tied(t.name()) != nullptr) continue;
      if (t.name() == kLmHeadName && m_.target.tied_embeddings()) continue;  // reported by compare_tying
      add(Severity::kError, fmt::format("tensor \"{}\"", printable(t.name())),
          fmt::format("is in {} but missing from target ({})", role(name, model), m_.target.path()));
    }
  }

  const MergeInputs& m_;
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

uint64_t output_tensor_bytes(const ModelFolder& target) {
  uint64_t bytes = 0;
  for (const auto& shard : target.shards()) bytes += shard->file_size();
  return bytes;
}

}  // namespace rvec
