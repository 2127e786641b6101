#include "merge/executor.hpp"

#include <hwy/aligned_allocator.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>
#include <future>
#include <map>

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

// The readers and f32 tiles of one vector.
struct VectorBuffers {
  TensorBlockReader post{kMergeBlockElements};
  TensorBlockReader pre{kMergeBlockElements};
  hwy::AlignedFreeUniquePtr<float[]> delta = tile_buffer();
};

}  // namespace

// The readers and f32 delta tiles of a task's vectors, with the time their
// reads and statistics passes took. One thread at a time.
class TaskExecutor::VectorStreams {
 public:
  VectorStreams() { std::fill_n(zeros_.get(), kTileElements, 0.0f); }

  // Reads block [first, first + n) of every vector of `task`.
  void read(const TensorTask& task, uint64_t first, size_t n) {
    const ScopeTimer timer(times_.read_s);
    while (vectors_.size() < task.vectors.size()) vectors_.push_back(std::make_unique<VectorBuffers>());
    deltas_.resize(task.vectors.size());
    for (size_t i = 0; i < task.vectors.size(); ++i) {
      VectorBuffers& b = *vectors_[i];
      deltas_[i] = b.delta.get();
      b.post.read(*task.vectors[i].post, first, n);
      if (task.vectors[i].pre) b.pre.read(*task.vectors[i].pre, first, n);
    }
  }

  // d_i = post_i - pre_i for elements [tile, tile + m) of the block read last;
  // `sums` (if set) accumulates ||pre||^2 and ||d||^2 of the first vector.
  void deltas_of_tile(const TensorTask& task, size_t tile, size_t m, kernels::DeltaSums* sums) {
    for (size_t i = 0; i < task.vectors.size(); ++i) {
      VectorBuffers& v = *vectors_[i];
      v.post.widen(tile, std::span(v.delta.get(), m));
      const bool has_pre = task.vectors[i].pre != nullptr;
      if (has_pre) v.pre.widen(tile, std::span(minus_.get(), m));
      if (i == 0 && sums) kernels::accumulate_delta_sums(has_pre ? minus_.get() : zeros_.get(), v.delta.get(), nullptr, m, *sums);
      if (has_pre) kernels::subtract(v.delta.get(), minus_.get(), v.delta.get(), m);
    }
  }

  // Streams the task's deltas through the combiner's statistics passes.
  void statistics_passes(const TensorTask& task, unsigned passes, TensorCombiner& combiner,
                         const std::function<void()>& after_block) {
    for (unsigned pass = 0; pass < passes; ++pass) {
      for (uint64_t first = 0; first < task.combined_elements; first += kMergeBlockElements) {
        const size_t n = std::min<uint64_t>(kMergeBlockElements, task.combined_elements - first);
        read(task, first, n);
        observe_block(task, pass, combiner, first, n);
        after_block();
      }
      combiner.end_pass(pass);
    }
  }

  std::span<const float* const> deltas() const { return deltas_; }
  const VectorBuffers& vector(size_t i) const { return *vectors_[i]; }
  const StageTimes& times() const { return times_; }

  uint64_t bytes_read() const {
    uint64_t n = 0;
    for (const auto& v : vectors_) n += v->post.bytes_read() + v->pre.bytes_read();
    return n;
  }

 private:
  void observe_block(const TensorTask& task, unsigned pass, TensorCombiner& combiner, uint64_t first, size_t n) {
    const ScopeTimer timer(times_.compute_s);
    for (uint64_t tile = 0; tile < n; tile += kTileElements) {
      const size_t m = std::min<uint64_t>(kTileElements, n - tile);
      deltas_of_tile(task, tile, m, nullptr);
      for (size_t i = 0; i < task.vectors.size(); ++i) {
        combiner.observe(pass, i, first + tile, std::span<const float>(deltas_[i], m));
      }
    }
  }

  std::vector<std::unique_ptr<VectorBuffers>> vectors_;
  std::vector<const float*> deltas_;
  hwy::AlignedFreeUniquePtr<float[]> minus_ = tile_buffer(), zeros_ = tile_buffer();
  StageTimes times_;
};

struct TaskExecutor::Buffers {
  TensorBlockReader base{kMergeBlockElements};
  VectorStreams vectors;
  hwy::AlignedFreeUniquePtr<float[]> base_tile = tile_buffer(), out = tile_buffer(), scratch = tile_buffer();
  std::vector<std::byte> rows;  // a block's encoded rows while they are reordered

  uint64_t bytes_read() const { return base.bytes_read() + vectors.bytes_read(); }
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

uint64_t TaskExecutor::bytes_read() const { return buffers_->bytes_read() + lookahead_bytes_; }

StageTimes TaskExecutor::stage_times() const {
  StageTimes times = times_;
  times += buffers_->vectors.times();
  return times;
}

void TaskExecutor::run(const TensorTask& task, const std::function<void(uint64_t)>& progress) {
  const TensorTask* one = &task;
  run_all(std::span(&one, 1), 0, progress);
}

// A combiner whose statistics passes are done, the bytes they read, and the
// readers they used (back to the pool once collected).
struct TaskExecutor::Prepared {
  std::unique_ptr<TensorCombiner> combiner;
  uint64_t bytes_read = 0;
  std::unique_ptr<VectorStreams> streams;
};

void TaskExecutor::run_all(std::span<const TensorTask* const> tasks, unsigned lookahead,
                           const std::function<void(uint64_t)>& progress) {
  // Later tasks' statistics passes run on threads of their own, each with
  // its own readers, at most `lookahead` at a time. A thread owns its readers
  // until its result is collected; the futures wait for their threads when
  // destroyed (also when this throws).
  std::vector<std::unique_ptr<VectorStreams>> pool;
  for (unsigned i = 0; i < lookahead; ++i) pool.push_back(std::make_unique<VectorStreams>());
  std::map<size_t, std::future<Prepared>> ahead;
  size_t next = 1;  // the next task that may be prepared ahead
  const auto prepare_ahead = [&] {
    for (; next < tasks.size() && !pool.empty(); ++next) {
      if (statistics_passes(method_, *tasks[next], params_) == 0) continue;
      ahead[next] = std::async(std::launch::async, [this, task = tasks[next], streams = std::move(pool.back())]() mutable {
        const uint64_t before = streams->bytes_read();  // the readers count over every task they served
        auto combiner = prepare(*task, *streams, [] {});
        const uint64_t bytes = streams->bytes_read() - before;
        return Prepared{std::move(combiner), bytes, std::move(streams)};
      });
      pool.pop_back();
    }
  };
  for (size_t i = 0; i < tasks.size(); ++i) {
    prepare_ahead();
    std::unique_ptr<TensorCombiner> combiner;
    if (const auto it = ahead.find(i); it != ahead.end()) {
      Prepared prepared = it->second.get();
      ahead.erase(it);
      combiner = std::move(prepared.combiner);
      lookahead_bytes_ += prepared.bytes_read;
      pool.push_back(std::move(prepared.streams));
    }
    run_task(*tasks[i], std::move(combiner), progress);
  }
}

std::unique_ptr<TensorCombiner> TaskExecutor::prepare(const TensorTask& task, VectorStreams& streams,
                                                      const std::function<void()>& after_block) const {
  const TaskContext context(task, params_);
  auto combiner = method_.begin_tensor(context.get());
  streams.statistics_passes(task, method_.statistics_passes(context.get()), *combiner, after_block);
  return combiner;
}

void TaskExecutor::run_task(const TensorTask& task, std::unique_ptr<TensorCombiner> combiner,
                            const std::function<void(uint64_t)>& progress) {
  if (!task.generated.empty()) return write_generated(task);
  const uint64_t total = task.element_count();
  const uint64_t step = block_elements(task);
  if (!task.copied()) {
    if (!combiner) combiner = prepare(task, buffers_->vectors, [&] { progress(bytes_read()); });
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

size_t TaskExecutor::acquire_buffer() {
  const ScopeTimer timer(times_.write_wait_s);
  return sink_.acquire();
}

void TaskExecutor::combine_block(const TensorTask& task, TensorCombiner& combiner, uint64_t first, size_t n) {
  Buffers& b = *buffers_;
  b.vectors.read(task, first, n);
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
    b.vectors.deltas_of_tile(task, tile, m, &sums);
    const float* delta = combiner.combine(first + tile, m, b.vectors.deltas(), b.scratch.get());
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
    const VectorBuffers& v = b.vectors.vector(i);
    bad += count_nonfinite(task.vectors[i].post->info->dtype, v.post.last_block().data(), n);
    if (task.vectors[i].pre) bad += count_nonfinite(task.vectors[i].pre->info->dtype, v.pre.last_block().data(), n);
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

void TaskExecutor::write_generated(const TensorTask& task) {
  if (task.generated.size() != task.element_count() || task.generated.size() > kMergeBlockElements) {
    fail(ErrorKind::kUsage, "tensor \"{}\": {} generated values for {} elements (at most {})", task.name,
         task.generated.size(), task.element_count(), kMergeBlockElements);
  }
  const size_t buffer = acquire_buffer();
  encode_from_f32(task.out_dtype, task.generated, sink_.data(buffer));
  sink_.submit(buffer, bytes_of(task.out_dtype, task.generated.size()), writers_);
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
