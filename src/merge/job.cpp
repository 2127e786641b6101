#include "merge/job.hpp"

#include <fmt/format.h>
#include <hwy/aligned_allocator.h>

#include <bit>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include "base/error.hpp"
#include "base/json.hpp"
#include "base/text.hpp"
#include "io/async_sink.hpp"
#include "io/model_writer.hpp"
#include "io/staging.hpp"
#include "merge/lineage.hpp"
#include "merge/provenance.hpp"
#include "numeric/codec.hpp"
#include "numeric/kernels.hpp"

namespace rvec {
namespace fs = std::filesystem;

namespace {

constexpr size_t kBlockElements = 1 << 20;  // 4 MiB of f32 per buffer
constexpr const char* kJobMarker = ".rvec-job";
constexpr const char* kDoneSuffix = ".rvec-done";

uint64_t bytes_of(DType dtype, uint64_t elements) { return elements * dtype_bits(dtype) / 8; }

// One output per weight; extract writes one vector, whatever weights were given.
std::vector<double> output_weights(const JobSpec& spec) {
  return spec.kind == JobKind::kExtract ? std::vector<double>{1.0} : spec.weights;
}

// ---------------------------------------------------------------- planning --

MergePlan check_compatibility(const JobInputs& in, JobKind kind) {
  switch (kind) {
    case JobKind::kMerge:
      return plan_merge({in.pre, *in.post, *in.target});
    case JobKind::kApply:
      return plan_merge({nullptr, *in.post, *in.target, "vector", "target", true});
    case JobKind::kExtract:
      return plan_merge({in.pre, *in.post, *in.post, "post", "post"});
  }
  return {};
}

void check_weights(const JobSpec& spec) {
  if (spec.weights.empty()) fail(ErrorKind::kUsage, "no weight given (-w 0.5 or -w 0.25,0.5,1)");
  std::set<std::string> seen;
  for (double w : spec.weights) {
    if (!std::isfinite(w) || std::fabs(w) > std::numeric_limits<float>::max()) {
      fail(ErrorKind::kUsage, "weight {} is not a finite f32 number", w);
    }
    if (!seen.insert(weight_folder_name(w)).second) fail(ErrorKind::kUsage, "weight {} is given twice", w);
  }
}

DType output_dtype(const JobSpec& spec, const TensorInfo& source) {
  if (!is_arithmetic(source.dtype)) return source.dtype;
  return spec.out_dtype.value_or(source.dtype);
}

TensorTask make_task(const TensorPlan& p, const JobSpec& spec) {
  TensorTask t;
  const TensorInfo& info = *p.target->info;
  t.name = p.name();
  t.out_dtype = output_dtype(spec, info);
  t.out_shape = info.shape;
  t.note = p.note;
  const uint64_t row_elements = p.rows() == 0 ? 0 : info.element_count() / p.rows();
  if (spec.kind == JobKind::kExtract) {
    // The vector holds only the rows pre and post share.
    t.plus = p.post;
    t.minus = p.pre;
    if (!t.out_shape.empty()) t.out_shape[0] = p.combined_rows;
    t.combined_elements = p.combined_rows * row_elements;
    return t;
  }
  t.base = p.target;
  if (p.action != TensorAction::kCombine) return t;
  if (const TensorRule* rule = first_match(spec.rules, t.name)) {
    t.scale = rule->scale();
    t.rule = rule->describe();
  }
  if (t.scale == 0.0) {
    t.note = fmt::format("copied from target ({})", t.rule);
    return t;
  }
  t.plus = p.post;
  t.minus = p.pre;
  t.combined_elements = p.combined_rows * row_elements;
  return t;
}

uint64_t bytes_read_for(const TensorTask& t) {
  uint64_t n = 0;
  for (const ModelTensor* source : {t.plus, t.minus}) {
    if (source) n += bytes_of(source->info->dtype, t.combined_elements);
  }
  if (t.base) n += t.base->info->byte_size();
  return n;
}

std::vector<TensorSpec> output_specs(const std::vector<TensorTask>& tasks) {
  std::vector<TensorSpec> specs;
  for (const auto& t : tasks) specs.push_back({t.name, t.out_dtype, t.out_shape});
  return specs;
}

// ---------------------------------------------------------------- outputs --

// The state of one output folder across runs.
struct OutputSlot {
  OutputResult result;
  std::string fingerprint;
  std::unique_ptr<StagingDir> staging;
  std::vector<bool> shard_done;
  bool resume = false;  // the partial folder was started by this very job

  bool needs_shard(size_t s) const { return !result.already_complete && !shard_done[s]; }
};

bool finished_by_same_job(const fs::path& dest, const std::string& fingerprint) {
  const auto file = dest / kProvenanceFile;
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) return false;
  try {
    const auto json = read_json_file(file.string(), 64'000'000);
    return json.value("fingerprint", "") == fingerprint;
  } catch (const Error&) {
    return false;
  }
}

uint64_t expected_file_size(const ShardPlan& shard, const Metadata& metadata) {
  return 8 + build_header(safetensors_order(shard.tensors), metadata).size() + shard.tensor_bytes;
}

// A shard from an interrupted run counts only if its marker names this job,
// its size is exact and its header validates with exactly the planned tensors.
bool shard_verified(const fs::path& partial, const ShardPlan& shard, const Metadata& metadata,
                    const std::string& fingerprint) {
  const auto file = partial / shard.file_name;
  const auto marker = partial / (shard.file_name + kDoneSuffix);
  std::error_code ec;
  if (!fs::is_regular_file(marker, ec) || !fs::is_regular_file(file, ec)) return false;
  try {
    if (read_small_file(marker.string(), 4096) != fingerprint) return false;
    if (fs::file_size(file) != expected_file_size(shard, metadata)) return false;
    const auto opened = SafetensorsFile::open(file.string());
    if (opened->header().tensors.size() != shard.tensors.size()) return false;
    for (const auto& t : shard.tensors) {
      const TensorInfo* found = opened->header().find(t.name);
      if (!found || found->dtype != t.dtype || found->shape != t.shape) return false;
    }
    return true;
  } catch (const Error&) {
    return false;
  }
}

// Decides, without writing anything, what is left to do for one output.
void inspect_slot(OutputSlot& slot, const JobSpec& spec, const std::vector<ShardPlan>& shards) {
  const fs::path& dest = slot.result.path;
  slot.shard_done.assign(shards.size(), false);
  std::error_code ec;
  if (fs::exists(dest, ec) && !spec.overwrite) {
    if (finished_by_same_job(dest, slot.fingerprint)) {
      slot.result.already_complete = true;
      return;
    }
    fail(ErrorKind::kUsage, "{}: already exists and was not made by this job (pass --overwrite to replace it)",
         dest.string());
  }
  // Resume only what this very job started; anything else in the partial folder is discarded.
  const fs::path partial = staging_path_for(dest);
  if (fs::is_regular_file(partial / kJobMarker, ec)) {
    try {
      slot.resume = read_small_file((partial / kJobMarker).string(), 4096) == slot.fingerprint;
    } catch (const Error&) {
    }
  }
  const Metadata metadata = shard_metadata(spec, slot.result.w);
  for (size_t s = 0; s < shards.size(); ++s) {
    slot.shard_done[s] = slot.resume && shard_verified(partial, shards[s], metadata, slot.fingerprint);
    slot.result.shards_reused += slot.shard_done[s];
  }
}

// Creates (or reopens) the output's partial folder; called after the space check.
void open_slot(OutputSlot& slot, const JobSpec& spec) {
  if (slot.result.already_complete) return;
  slot.staging = std::make_unique<StagingDir>(slot.result.path, spec.overwrite, slot.resume);
  slot.staging->write_text(kJobMarker, slot.fingerprint);
}

// ---------------------------------------------------------------- compute --

// NaN and Inf have all exponent bits set. Written as plain loops over the
// element type so the compiler vectorises them; they run once per output block.
uint64_t count_nonfinite(DType dtype, const std::byte* data, size_t n) {
  uint64_t count = 0;
  if (dtype == DType::kF32) {
    const auto* values = reinterpret_cast<const float*>(data);
    for (size_t i = 0; i < n; ++i) count += (std::bit_cast<uint32_t>(values[i]) & 0x7F800000u) == 0x7F800000u;
    return count;
  }
  const uint16_t exponent = dtype == DType::kBF16 ? 0x7F80 : 0x7C00;
  const auto* bits = reinterpret_cast<const uint16_t*>(data);
  for (size_t i = 0; i < n; ++i) count += (bits[i] & exponent) == exponent;
  return count;
}

// Streams tensors block by block from the inputs to the shard writers of
// every output that needs the current shard.
//
// Hot path, per block of up to kBlockElements: one pread per input into raw
// buffers (the kernel was asked to prefetch this block while the previous one
// was computed), then cache-sized tiles of kTileElements are widened to f32,
// combined and narrowed straight into one sink buffer per output, which the
// AsyncSink's thread appends to the files while the next block is computed.
class TensorStreamer {
 public:
  TensorStreamer(std::vector<OutputSlot*> outputs, std::vector<double> weights, AsyncSink& sink)
      : outputs_(std::move(outputs)), weights_(std::move(weights)), sink_(sink) {
    for (auto* raw : {&plus_raw_, &minus_raw_, &base_raw_}) *raw = hwy::AllocateAligned<std::byte>(kBlockElements * 4);
    for (auto* tile : {&plus_, &minus_, &base_, &out_, &zeros_}) *tile = hwy::AllocateAligned<float>(kTileElements);
    std::fill_n(zeros_.get(), kTileElements, 0.0f);
  }

  // ||pre||^2 and ||v||^2 per module kind, over the blocks combined so far.
  const std::map<std::string, kernels::DeltaSums>& vector_sums() const { return vector_sums_; }

  void set_writers(std::vector<SafetensorsWriter*> writers) { writers_ = std::move(writers); }
  uint64_t bytes_read() const { return bytes_read_; }

  template <typename Progress>
  void stream(const TensorTask& task, const Progress& progress) {
    const uint64_t total = task.element_count();
    for (uint64_t first = 0; first < task.combined_elements; first += kBlockElements) {
      prefetch(task, first + kBlockElements);
      combine_block(task, first, std::min<uint64_t>(kBlockElements, task.combined_elements - first));
      progress(bytes_read_);
    }
    for (uint64_t first = task.combined_elements; first < total; first += kBlockElements) {
      prefetch(task, first + kBlockElements);
      copy_block(task, first, std::min<uint64_t>(kBlockElements, total - first));
      progress(bytes_read_);
    }
  }

 private:
  static constexpr size_t kTileElements = 16 * 1024;  // 64 KiB of f32 per tile buffer: stays in L2

  // Starts background reads of the block after the one about to be computed.
  void prefetch(const TensorTask& task, uint64_t first) const {
    for (const ModelTensor* source : {task.plus, task.minus, task.base}) {
      if (source) {
        const DType dtype = source->info->dtype;
        source->file->prefetch(*source->info, bytes_of(dtype, first), bytes_of(dtype, kBlockElements));
      }
    }
  }

  // Raw bytes of elements [first, first + n) of `source`.
  void read_raw(const ModelTensor& source, uint64_t first, size_t n, std::byte* out) {
    const DType dtype = source.info->dtype;
    source.file->read(*source.info, bytes_of(dtype, first), std::span(out, bytes_of(dtype, n)));
    bytes_read_ += bytes_of(dtype, n);
  }

  void widen(const ModelTensor& source, const std::byte* raw, uint64_t tile_first, size_t m, float* out) const {
    const DType dtype = source.info->dtype;
    decode_to_f32(dtype, raw + bytes_of(dtype, tile_first), std::span(out, m));
  }

  // d = plus - minus;  out_k = base + w_k * scale * d  (extract: out = d)
  void combine_block(const TensorTask& task, uint64_t first, size_t n) {
    read_raw(*task.plus, first, n, plus_raw_.get());
    if (task.minus) read_raw(*task.minus, first, n, minus_raw_.get());
    if (task.base) read_raw(*task.base, first, n, base_raw_.get());
    std::vector<size_t> out(writers_.size());
    for (auto& buffer : out) buffer = sink_.acquire();
    kernels::DeltaSums& sums = vector_sums_[module_kind(task.name)];
    for (uint64_t tile = 0; tile < n; tile += kTileElements) {
      const size_t m = std::min<uint64_t>(kTileElements, n - tile);
      widen(*task.plus, plus_raw_.get(), tile, m, plus_.get());
      if (task.minus) widen(*task.minus, minus_raw_.get(), tile, m, minus_.get());
      kernels::accumulate_delta_sums(task.minus ? minus_.get() : zeros_.get(), plus_.get(), nullptr, m, sums);
      if (task.minus) kernels::subtract(plus_.get(), minus_.get(), plus_.get(), m);
      if (task.base) widen(*task.base, base_raw_.get(), tile, m, base_.get());
      for (size_t k = 0; k < out.size(); ++k) {
        const float* result = plus_.get();
        if (task.base) {
          const auto w = static_cast<float>(weights_[k] * task.scale);
          kernels::add_scaled(base_.get(), w, plus_.get(), out_.get(), m);
          result = out_.get();
        }
        encode_from_f32(task.out_dtype, std::span(result, m), sink_.data(out[k]) + bytes_of(task.out_dtype, tile));
      }
    }
    for (size_t k = 0; k < out.size(); ++k) {
      if (const uint64_t bad = count_nonfinite(task.out_dtype, sink_.data(out[k]), n); bad > 0) {
        if (inputs_nonfinite(task, n) == 0) record_nonfinite(k, task, bad);
      }
      sink_.submit(out[k], bytes_of(task.out_dtype, n), std::span(&writers_[k], 1));
    }
  }

  // Only consulted when an output block holds NaN/Inf (rare).
  uint64_t inputs_nonfinite(const TensorTask& task, size_t n) const {
    uint64_t bad = count_nonfinite(task.plus->info->dtype, plus_raw_.get(), n);
    if (task.minus) bad += count_nonfinite(task.minus->info->dtype, minus_raw_.get(), n);
    if (task.base) bad += count_nonfinite(task.base->info->dtype, base_raw_.get(), n);
    return bad;
  }

  // Elements the vector does not touch: the target's values, converted only
  // if the output dtype differs (so raw bytes, NaN payloads included, survive).
  void copy_block(const TensorTask& task, uint64_t first, size_t n) {
    const TensorInfo& info = *task.base->info;
    const size_t buffer = sink_.acquire();
    if (info.dtype == task.out_dtype || !is_arithmetic(info.dtype)) {
      read_raw(*task.base, first, n, sink_.data(buffer));
    } else {
      read_raw(*task.base, first, n, base_raw_.get());
      for (uint64_t tile = 0; tile < n; tile += kTileElements) {
        const size_t m = std::min<uint64_t>(kTileElements, n - tile);
        widen(*task.base, base_raw_.get(), tile, m, base_.get());
        encode_from_f32(task.out_dtype, std::span<const float>(base_.get(), m),
                        sink_.data(buffer) + bytes_of(task.out_dtype, tile));
      }
    }
    sink_.submit(buffer, bytes_of(task.out_dtype, n), writers_);
  }

  void record_nonfinite(size_t k, const TensorTask& task, uint64_t count) {
    auto& list = outputs_[k]->result.nonfinite;
    if (!list.empty() && list.back().first == task.name) {
      list.back().second += count;
    } else {
      list.emplace_back(task.name, count);
    }
  }

  std::vector<OutputSlot*> outputs_;
  std::vector<double> weights_;
  AsyncSink& sink_;
  std::vector<SafetensorsWriter*> writers_;
  hwy::AlignedFreeUniquePtr<std::byte[]> plus_raw_, minus_raw_, base_raw_;
  hwy::AlignedFreeUniquePtr<float[]> plus_, minus_, base_, out_, zeros_;
  std::map<std::string, kernels::DeltaSums> vector_sums_;
  uint64_t bytes_read_ = 0;
};

// ---------------------------------------------------------------- finishing --

void copy_aux_files(const OutputSlot& slot, const JobInputs& inputs, const JobSpec& spec) {
  const ModelFolder* source = spec.kind == JobKind::kExtract ? inputs.post : inputs.target;
  if (!source->is_folder()) return;
  const fs::path dir(source->path());
  for (const auto& name : source->aux_files()) {
    if (name == "README.md") continue;  // replaced by the model card
    if (spec.kind == JobKind::kExtract && name != "config.json") continue;
    if (name == "config.json" && spec.out_dtype) {
      auto config = read_json_file((dir / name).string(), 16'000'000);
      const std::string torch(torch_dtype_name(*spec.out_dtype));
      if (config.contains("dtype")) config["dtype"] = torch;
      else config["torch_dtype"] = torch;
      slot.staging->write_text(name, config.dump(2) + "\n");
      continue;
    }
    slot.staging->copy_in(dir / name, name);
  }
}

void finish_slot(OutputSlot& slot, const JobInputs& inputs, const JobSpec& spec, const JobPlan& plan,
                 const std::vector<ShardPlan>& shards, const JobResult& result) {
  if (shards.size() > 1) slot.staging->write_text("model.safetensors.index.json", index_json(shards));
  copy_aux_files(slot, inputs, spec);
  slot.staging->write_text("README.md", model_card(inputs, spec, plan, slot.result, result));
  if (!spec.recipe_text.empty()) slot.staging->write_text(kRecipeFile, spec.recipe_text);
  slot.staging->write_text(kProvenanceFile,
                           provenance(inputs, spec, plan, slot.result, slot.fingerprint, result).dump(2) + "\n");
  for (const auto& shard : shards) fs::remove(slot.staging->file(shard.file_name + kDoneSuffix));
  fs::remove(slot.staging->file(kJobMarker));
  slot.staging->commit();
}

// Fault injection for the resume tests: RVEC_TEST_KILL_AFTER_SHARDS=N makes
// the process kill itself (SIGKILL, like an OOM kill or a power cut would)
// after its N-th output shard is complete.
void maybe_kill_for_test(uint64_t shards_written) {
  const char* limit = std::getenv("RVEC_TEST_KILL_AFTER_SHARDS");
  if (limit != nullptr && shards_written == std::strtoull(limit, nullptr, 10)) std::raise(SIGKILL);
}

}  // namespace

std::string_view job_kind_name(JobKind kind) {
  switch (kind) {
    case JobKind::kMerge: return "merge";
    case JobKind::kApply: return "apply";
    case JobKind::kExtract: return "extract";
  }
  return "?";
}

std::string weight_folder_name(double w) { return fmt::format("w{}", w); }

uint64_t TensorTask::element_count() const {
  uint64_t n = 1;
  for (uint64_t d : out_shape) n *= d;
  return n;
}

JobPlan plan_job(const JobInputs& inputs, const JobSpec& spec) {
  JobPlan plan;
  if (spec.kind != JobKind::kExtract) check_weights(spec);
  if (spec.out_dtype && !is_arithmetic(*spec.out_dtype)) {
    fail(ErrorKind::kUsage, "output dtype {} is not BF16, F16 or F32", dtype_name(*spec.out_dtype));
  }
  plan.compatibility = check_compatibility(inputs, spec.kind);
  if (!plan.compatibility.compatible()) {
    for (const auto& f : plan.compatibility.findings) {
      if (f.severity == Severity::kError) {
        fail(ErrorKind::kIncompatible, "{}: {} ({} error(s) in all; `rvec check` lists them)", f.subject, f.message,
             plan.compatibility.count(Severity::kError));
      }
    }
  }
  for (const auto& p : plan.compatibility.tensors) plan.tasks.push_back(make_task(p, spec));
  for (const auto& t : plan.tasks) plan.bytes_to_read += bytes_read_for(t);
  const std::vector<double> weights = output_weights(spec);  // never empty: check_weights ran
  for (const auto& shard : plan_shards(output_specs(plan.tasks), spec.max_shard_bytes)) {
    plan.bytes_per_output += expected_file_size(shard, shard_metadata(spec, weights.front()));
  }
  for (double w : weights) {
    plan.outputs.push_back(weights.size() == 1 ? spec.output : spec.output / weight_folder_name(w));
  }
  plan.free_bytes = free_bytes_at(spec.output);
  return plan;
}

JobResult run_job(const JobInputs& inputs, const JobSpec& spec, const JobPlan& plan, const JobProgress& progress) {
  const auto start = std::chrono::steady_clock::now();
  const std::vector<double> weights = output_weights(spec);
  const auto shards = plan_shards(output_specs(plan.tasks), spec.max_shard_bytes);

  std::vector<OutputSlot> slots(weights.size());
  for (size_t k = 0; k < weights.size(); ++k) {
    slots[k].result.path = plan.outputs[k];
    slots[k].result.w = weights[k];
    slots[k].fingerprint = output_fingerprint(inputs, spec, weights[k]);
  }
  uint64_t bytes_needed = 0;
  for (auto& slot : slots) {
    inspect_slot(slot, spec, shards);
    if (slot.result.already_complete) continue;
    const Metadata metadata = shard_metadata(spec, slot.result.w);
    for (size_t s = 0; s < shards.size(); ++s) {
      if (!slot.shard_done[s]) bytes_needed += expected_file_size(shards[s], metadata);
    }
  }
  const uint64_t free = free_bytes_at(spec.output);
  if (bytes_needed > free) {
    fail(ErrorKind::kIo, "{}: not enough disk space: the job writes {} but {} is free (nothing was written)",
         spec.output.string(), human_bytes(bytes_needed), human_bytes(free));
  }
  for (auto& slot : slots) open_slot(slot, spec);

  std::map<std::string, const TensorTask*> task_by_name;
  for (const auto& t : plan.tasks) task_by_name[t.name] = &t;

  JobResult result;
  uint64_t skipped_read = 0;
  uint64_t shards_written = 0;
  for (size_t s = 0; s < shards.size(); ++s) {
    std::vector<OutputSlot*> active;
    std::vector<double> active_weights;
    for (auto& slot : slots) {
      if (slot.needs_shard(s)) {
        active.push_back(&slot);
        active_weights.push_back(slot.result.w);
      }
    }
    if (active.empty()) {
      for (const auto& spec_t : shards[s].tensors) skipped_read += bytes_read_for(*task_by_name.at(spec_t.name));
      if (progress) progress(skipped_read + result.bytes_read, plan.bytes_to_read);
      continue;
    }
    AsyncSink sink(2 * active.size() + 2, kBlockElements * 4);
    TensorStreamer streamer(active, active_weights, sink);
    std::vector<std::unique_ptr<SafetensorsWriter>> writers;
    std::vector<SafetensorsWriter*> raw_writers;
    for (auto* slot : active) {
      writers.push_back(std::make_unique<SafetensorsWriter>(slot->staging->file(shards[s].file_name).string(),
                                                            shards[s].tensors, shard_metadata(spec, slot->result.w)));
      raw_writers.push_back(writers.back().get());
    }
    streamer.set_writers(raw_writers);
    const uint64_t read_before = result.bytes_read + skipped_read;
    for (const auto& t : writers.front()->order()) {
      streamer.stream(*task_by_name.at(t.name), [&](uint64_t read) {
        if (progress) progress(read_before + read, plan.bytes_to_read);
      });
    }
    sink.drain();
    for (size_t k = 0; k < active.size(); ++k) {
      writers[k]->finish();
      result.bytes_written += writers[k]->total_size();
      active[k]->staging->write_text(shards[s].file_name + kDoneSuffix, active[k]->fingerprint);
    }
    result.bytes_read += streamer.bytes_read();
    for (const auto& [kind, sums] : streamer.vector_sums()) result.vector_by_kind[kind] += sums;
    maybe_kill_for_test(++shards_written);
  }
  for (const auto* shard_input : {inputs.pre, inputs.post, inputs.target}) {
    if (!shard_input) continue;
    for (const auto& f : shard_input->shards()) f->check_unchanged();
  }
  result.vector_stats_complete = true;
  for (const auto& slot : slots) {
    result.vector_stats_complete = result.vector_stats_complete && !slot.result.already_complete && slot.result.shards_reused == 0;
  }
  for (auto& slot : slots) {
    if (!slot.result.already_complete) finish_slot(slot, inputs, spec, plan, shards, result);
    result.outputs.push_back(slot.result);
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace rvec
