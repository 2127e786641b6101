#include "merge/executor.hpp"

#include <hwy/aligned_allocator.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>

#include "base/error.hpp"
#include "hf/gguf_export.hpp"
#include "hf/tensor_reader.hpp"
#include "numeric/codec.hpp"

namespace rvec {
namespace {

constexpr size_t kTileElements = 16 * 1024;  // 64 KiB of f32 per tile buffer: stays in L2

uint64_t bytes_of(DType dtype, uint64_t elements) { return dtype_bytes(dtype, elements); }

hwy::AlignedFreeUniquePtr<float[]> tile_buffer() { return hwy::AllocateAligned<float>(kTileElements); }

// NaN and Inf have all exponent bits set. Written as plain loops over the
// element type so the compiler vectorises them; they run once per output block.
uint64_t count_nonfinite(DType dtype, const std::byte* data, size_t n) {
  uint64_t count = 0;
  if (is_block_type(dtype)) {  // what the blocks decode to
    std::vector<float> tile(kTileElements);
    for (size_t done = 0; done < n; done += kTileElements) {
      const size_t m = std::min(kTileElements, n - done);
      decode_to_f32(dtype, data + bytes_of(dtype, done), std::span(tile.data(), m));
      for (size_t i = 0; i < m; ++i) count += !std::isfinite(tile[i]);
    }
    return count;
  }
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

// Elements per block: kMergeBlockElements, or whole heads when the task's
// rows are interleaved per head (so a block's rows are its own permutation).
uint64_t block_elements(const TensorTask& task) {
  if (task.interleave_heads == 0) return kMergeBlockElements;
  const uint64_t total = task.element_count();
  const uint64_t head = total / task.interleave_heads;
  if (head > kMergeBlockElements) {
    fail(ErrorKind::kUsage, "tensor \"{}\": a head of {} elements is larger than rvec's {}-element block", task.name, head,
         kMergeBlockElements);
  }
  return kMergeBlockElements / head * head;
}

// The readers and f32 tiles of one vector.
struct VectorBuffers {
  TensorBlockReader post{kMergeBlockElements};
  TensorBlockReader pre{kMergeBlockElements};
  hwy::AlignedFreeUniquePtr<float[]> delta = tile_buffer();
};

}  // namespace

struct TaskExecutor::Buffers {
  TensorBlockReader base{kMergeBlockElements};
  std::vector<std::unique_ptr<VectorBuffers>> vectors;
  std::vector<const float*> deltas;
  hwy::AlignedFreeUniquePtr<float[]> base_tile = tile_buffer(), minus = tile_buffer(), out = tile_buffer(),
                                     scratch = tile_buffer(), zeros = tile_buffer();
  std::vector<std::byte> rows;  // a block's encoded rows while they are reordered

  Buffers() { std::fill_n(zeros.get(), kTileElements, 0.0f); }

  void reserve_vectors(size_t count) {
    while (vectors.size() < count) vectors.push_back(std::make_unique<VectorBuffers>());
    deltas.resize(count);
    for (size_t i = 0; i < count; ++i) deltas[i] = vectors[i]->delta.get();
  }
  uint64_t bytes_read() const {
    uint64_t n = base.bytes_read();
    for (const auto& v : vectors) n += v->post.bytes_read() + v->pre.bytes_read();
    return n;
  }
};

// Adds the seconds a scope took to a counter.
class ScopeTimer {
 public:
  explicit ScopeTimer(double& seconds) : seconds_(seconds), start_(std::chrono::steady_clock::now()) {}
  ~ScopeTimer() { seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }
  ScopeTimer(const ScopeTimer&) = delete;
  ScopeTimer& operator=(const ScopeTimer&) = delete;

 private:
  double& seconds_;
  std::chrono::steady_clock::time_point start_;
};

StageTimes& StageTimes::operator+=(const StageTimes& o) {
  read_s += o.read_s, compute_s += o.compute_s, write_wait_s += o.write_wait_s;
  write_s += o.write_s, sync_s += o.sync_s, bytes_appended += o.bytes_appended;
  return *this;
}

uint64_t TensorTask::element_count() const {
  uint64_t n = 1;
  for (uint64_t d : out_shape) n *= d;
  return n;
}

uint64_t TensorTask::bytes_to_read(unsigned statistics_passes) const {
  uint64_t vector_bytes = 0;
  for (const auto& v : vectors) {
    vector_bytes += bytes_of(v.post->info->dtype, combined_elements);
    if (v.pre) vector_bytes += bytes_of(v.pre->info->dtype, combined_elements);
  }
  if (!copied()) vector_bytes *= 1 + statistics_passes;
  return vector_bytes + (base ? base->info->byte_size() : 0);
}

TaskContext::TaskContext(const TensorTask& task, const MethodParams& merge_params) {
  for (const auto& v : task.vectors) {
    weights_.push_back(v.weight);
    params_.push_back(v.params.empty() ? merge_params : v.params);
  }
  context_ = {task.name, task.combined_elements, weights_, &merge_params, params_};
}

unsigned statistics_passes(const MergeMethod& method, const TensorTask& task, const MethodParams& merge_params) {
  if (task.copied()) return 0;
  return method.statistics_passes(TaskContext(task, merge_params).get());
}

TaskExecutor::TaskExecutor(const MergeMethod& method, const MethodParams& params, std::vector<double> weights,
                           AsyncSink& sink, std::vector<TensorFileWriter*> writers)
    : method_(method),
      params_(params),
      weights_(std::move(weights)),
      sink_(sink),
      writers_(std::move(writers)),
      buffers_(std::make_unique<Buffers>()),
      nonfinite_(writers_.size()) {}

TaskExecutor::~TaskExecutor() = default;

uint64_t TaskExecutor::bytes_read() const { return buffers_->bytes_read(); }

void TaskExecutor::run(const TensorTask& task, const std::function<void(uint64_t)>& progress) {
  const uint64_t total = task.element_count();
  const uint64_t step = block_elements(task);
  if (!task.copied()) {
    buffers_->reserve_vectors(task.vectors.size());
    const TaskContext context(task, params_);
    const auto combiner = method_.begin_tensor(context.get());
    const unsigned passes = method_.statistics_passes(context.get());
    for (unsigned pass = 0; pass < passes; ++pass) statistics_pass(task, pass, *combiner, progress);
    for (uint64_t first = 0; first < task.combined_elements; first += step) {
      combine_block(task, *combiner, first, std::min<uint64_t>(step, task.combined_elements - first));
      progress(bytes_read());
    }
  }
  for (uint64_t first = task.combined_elements; first < total; first += step) {
    copy_block(task, first, std::min<uint64_t>(step, total - first));
    progress(bytes_read());
  }
}

void TaskExecutor::read_vectors(const TensorTask& task, uint64_t first, size_t n) {
  const ScopeTimer timer(times_.read_s);
  for (size_t i = 0; i < task.vectors.size(); ++i) {
    VectorBuffers& b = *buffers_->vectors[i];
    b.post.read(*task.vectors[i].post, first, n);
    if (task.vectors[i].pre) b.pre.read(*task.vectors[i].pre, first, n);
  }
}

// d_i = post_i - pre_i for elements [tile, tile + m) of the block read last;
// `sums` (if set) accumulates ||pre||^2 and ||d||^2 of the first vector.
void TaskExecutor::deltas_of_tile(const TensorTask& task, size_t tile, size_t m, kernels::DeltaSums* sums) {
  Buffers& b = *buffers_;
  for (size_t i = 0; i < task.vectors.size(); ++i) {
    VectorBuffers& v = *b.vectors[i];
    v.post.widen(tile, std::span(v.delta.get(), m));
    const bool has_pre = task.vectors[i].pre != nullptr;
    if (has_pre) v.pre.widen(tile, std::span(b.minus.get(), m));
    if (i == 0 && sums) kernels::accumulate_delta_sums(has_pre ? b.minus.get() : b.zeros.get(), v.delta.get(), nullptr, m, *sums);
    if (has_pre) kernels::subtract(v.delta.get(), b.minus.get(), v.delta.get(), m);
  }
}

void TaskExecutor::statistics_pass(const TensorTask& task, unsigned pass, TensorCombiner& combiner,
                                   const std::function<void(uint64_t)>& progress) {
  for (uint64_t first = 0; first < task.combined_elements; first += kMergeBlockElements) {
    const size_t n = std::min<uint64_t>(kMergeBlockElements, task.combined_elements - first);
    read_vectors(task, first, n);
    const ScopeTimer timer(times_.compute_s);
    for (uint64_t tile = 0; tile < n; tile += kTileElements) {
      const size_t m = std::min<uint64_t>(kTileElements, n - tile);
      deltas_of_tile(task, tile, m, nullptr);
      for (size_t i = 0; i < task.vectors.size(); ++i) {
        combiner.observe(pass, i, first + tile, std::span<const float>(buffers_->deltas[i], m));
      }
    }
    progress(bytes_read());
  }
  combiner.end_pass(pass);
}

size_t TaskExecutor::acquire_buffer() {
  const ScopeTimer timer(times_.write_wait_s);
  return sink_.acquire();
}

void TaskExecutor::combine_block(const TensorTask& task, TensorCombiner& combiner, uint64_t first, size_t n) {
  Buffers& b = *buffers_;
  read_vectors(task, first, n);
  if (task.base) {
    const ScopeTimer timer(times_.read_s);
    b.base.read(*task.base, first, n);
  }
  std::vector<size_t> out(writers_.size());
  for (auto& buffer : out) buffer = acquire_buffer();
  const ScopeTimer timer(times_.compute_s);
  kernels::DeltaSums& sums = vector_sums_[std::string(module_kind_name(module_kind(task.name)))];
  for (uint64_t tile = 0; tile < n; tile += kTileElements) {
    const size_t m = std::min<uint64_t>(kTileElements, n - tile);
    deltas_of_tile(task, tile, m, &sums);
    const float* delta = combiner.combine(first + tile, m, b.deltas, b.scratch.get());
    if (task.base) b.base.widen(tile, std::span(b.base_tile.get(), m));
    for (size_t k = 0; k < out.size(); ++k) {
      const float* result = delta;
      if (task.base) {
        const auto w = static_cast<float>(weights_[k] * task.scale);
        kernels::add_scaled(b.base_tile.get(), w, delta, b.out.get(), m);
        result = b.out.get();
      }
      encode_from_f32(task.out_dtype, std::span(result, m), sink_.data(out[k]) + bytes_of(task.out_dtype, tile));
    }
  }
  for (size_t k = 0; k < out.size(); ++k) {
    if (const uint64_t bad = count_nonfinite(task.out_dtype, sink_.data(out[k]), n); bad > 0) {
      if (inputs_nonfinite(task, n) == 0) record_nonfinite(k, task.name, bad);
    }
    interleave_rows(task, sink_.data(out[k]), n);
    sink_.submit(out[k], bytes_of(task.out_dtype, n), std::span(&writers_[k], 1));
  }
}

// Only consulted when an output block holds NaN/Inf (rare).
uint64_t TaskExecutor::inputs_nonfinite(const TensorTask& task, size_t n) const {
  const Buffers& b = *buffers_;
  uint64_t bad = task.base ? count_nonfinite(task.base->info->dtype, b.base.last_block().data(), n) : 0;
  for (size_t i = 0; i < task.vectors.size(); ++i) {
    bad += count_nonfinite(task.vectors[i].post->info->dtype, b.vectors[i]->post.last_block().data(), n);
    if (task.vectors[i].pre) bad += count_nonfinite(task.vectors[i].pre->info->dtype, b.vectors[i]->pre.last_block().data(), n);
  }
  return bad;
}

// Elements δ does not touch: the base's values, converted only if the output
// dtype differs (so raw bytes, NaN payloads included, survive).
void TaskExecutor::copy_block(const TensorTask& task, uint64_t first, size_t n) {
  Buffers& b = *buffers_;
  const TensorInfo& info = *task.base->info;
  const size_t buffer = acquire_buffer();
  if (info.dtype == task.out_dtype || !is_arithmetic(info.dtype)) {
    const ScopeTimer timer(times_.read_s);
    b.base.read_into(*task.base, first, n, sink_.data(buffer));
  } else {
    {
      const ScopeTimer timer(times_.read_s);
      b.base.read(*task.base, first, n);
    }
    const ScopeTimer timer(times_.compute_s);
    for (uint64_t tile = 0; tile < n; tile += kTileElements) {
      const size_t m = std::min<uint64_t>(kTileElements, n - tile);
      b.base.widen(tile, std::span(b.base_tile.get(), m));
      encode_from_f32(task.out_dtype, std::span<const float>(b.base_tile.get(), m),
                      sink_.data(buffer) + bytes_of(task.out_dtype, tile));
    }
  }
  interleave_rows(task, sink_.data(buffer), n);
  sink_.submit(buffer, bytes_of(task.out_dtype, n), writers_);
}

// Reorders the encoded rows of a block that starts at a head boundary.
void TaskExecutor::interleave_rows(const TensorTask& task, std::byte* block, size_t n) {
  if (task.interleave_heads == 0) return;
  const uint64_t rows = task.out_shape.empty() ? 1 : task.out_shape[0];
  const uint64_t row_elements = task.element_count() / rows;
  const uint64_t head_rows = rows / task.interleave_heads;
  const uint64_t row_bytes = bytes_of(task.out_dtype, row_elements);
  std::vector<std::byte>& copy = buffers_->rows;
  copy.assign(block, block + bytes_of(task.out_dtype, n));
  for (uint64_t row = 0; row < n / row_elements; ++row) {
    std::memcpy(block + row * row_bytes, copy.data() + gguf_source_row(row, head_rows) * row_bytes, row_bytes);
  }
}

void TaskExecutor::record_nonfinite(size_t output, const std::string& tensor, uint64_t count) {
  auto& list = nonfinite_[output];
  if (!list.empty() && list.back().first == tensor) {
    list.back().second += count;
  } else {
    list.emplace_back(tensor, count);
  }
}

}  // namespace rvec
