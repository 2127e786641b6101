#include "merge/executor.hpp"

#include <hwy/aligned_allocator.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <map>
#include <optional>

#include "base/error.hpp"
#include "hf/gguf_export.hpp"
#include "hf/read_ahead.hpp"
#include "hf/tensor_reader.hpp"
#include "numeric/codec.hpp"

namespace rvec {
namespace {

constexpr size_t kTileElements = 16 * 1024;  // 64 KiB of f32 per tile buffer: stays in L2

uint64_t bytes_of(DType dtype, uint64_t elements) { return dtype_bytes(dtype, elements); }

hwy::AlignedFreeUniquePtr<float[]> tile_buffer() { return hwy::AllocateAligned<float>(kTileElements); }

// NaN and Inf, counted on each output tile right after it is encoded, while
// it is in cache.
uint64_t count_nonfinite(DType dtype, const std::byte* data, size_t n) {
  if (is_block_type(dtype)) {  // what the blocks decode to
    uint64_t count = 0;
    std::vector<float> tile(std::min(n, kTileElements));
    for (size_t done = 0; done < n; done += kTileElements) {
      const size_t m = std::min(kTileElements, n - done);
      decode_to_f32(dtype, data + bytes_of(dtype, done), std::span(tile.data(), m));
      count += kernels::count_nonfinite(tile.data(), m);
    }
    return count;
  }
  if (dtype == DType::kF32) return kernels::count_nonfinite(reinterpret_cast<const float*>(data), n);
  const uint16_t exponent = dtype == DType::kBF16 ? 0x7F80 : 0x7C00;
  return kernels::count_nonfinite16(reinterpret_cast<const uint16_t*>(data), exponent, n);
}

// Which of the n values at `data` are NaN or Inf.
std::vector<bool> nonfinite_flags(DType dtype, const std::byte* data, size_t n) {
  std::vector<float> values(n);
  decode_to_f32(dtype, data, values);
  std::vector<bool> flags(n);
  for (size_t j = 0; j < n; ++j) flags[j] = !std::isfinite(values[j]);
  return flags;
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

// Whether the base's bytes are the output's as they are (same dtype, or not a
// number type to convert).
bool copies_raw(const TensorTask& task) {
  const DType dtype = task.base->info->dtype;
  return dtype == task.out_dtype || !is_arithmetic(dtype);
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

// The elements the combining tasks of `row` combine (they agree); 0 when
// every task copies.
uint64_t combined_elements(const TaskRow& row) {
  for (const TensorTask* t : row) {
    if (!t->copied()) return t->combined_elements;
  }
  return 0;
}

// The f32 tiles of one (post, pre) pair: its delta, and pre's values.
struct PairTiles {
  size_t post = 0;                     // reader of post
  std::optional<size_t> pre;           // reader of pre; none for a saved vector
  hwy::AlignedFreeUniquePtr<float[]> delta = tile_buffer(), pre_values = tile_buffer();
};

}  // namespace

// The inputs of one row: every distinct input tensor of the groups that
// combine it has one reader (read once per block for all of them), every
// distinct (post, pre) pair its delta tile (formed once per tile). One
// thread at a time.
class TaskExecutor::RowStreams {
 public:
  // Reads blocks of up to `block_elements` elements (the element pass needs kMergeBlockElements).
  explicit RowStreams(size_t block_elements = kMergeBlockElements) : block_elements_(block_elements) {
    std::fill_n(zeros_.get(), kTileElements, 0.0f);
  }

  // Sets up the readers and pairs of `row`'s combining groups.
  void start(const TaskRow& row) {
    tensors_.clear();
    pair_keys_.clear();
    group_pairs_.assign(row.size(), {});
    deltas_.assign(row.size(), {});
    for (size_t g = 0; g < row.size(); ++g) {
      if (row[g]->copied()) continue;
      for (const TaskVector& v : row[g]->vectors) group_pairs_[g].push_back(pair_of(v));
    }
    for (size_t g = 0; g < row.size(); ++g) {
      for (const size_t p : group_pairs_[g]) deltas_[g].push_back(pairs_[p]->delta.get());
    }
  }

  // Reads block [first, first + n) of every input of the pairs in `pairs`.
  void read(const std::vector<bool>& pairs, uint64_t first, size_t n) {
    const ScopeTimer timer(times_.read_s);
    std::vector<bool> done(tensors_.size(), false);
    const auto read_once = [&](size_t reader) {
      if (done[reader]) return;
      done[reader] = true;
      readers_[reader]->read(*tensors_[reader], first, n);
    };
    for (size_t p = 0; p < pair_keys_.size(); ++p) {
      if (!pairs[p]) continue;
      read_once(pairs_[p]->post);
      if (pairs_[p]->pre) read_once(*pairs_[p]->pre);
    }
  }

  // d = post - pre for elements [tile, tile + m) of the block read last, for
  // the pairs in `pairs`; sums[g] (where set) accumulates ||pre||^2 and ||d||^2
  // of group g's first vector.
  void deltas_of_tile(const std::vector<bool>& pairs, size_t tile, size_t m,
                      std::span<kernels::DeltaSums* const> sums = {}) {
    for (size_t p = 0; p < pair_keys_.size(); ++p) {
      if (!pairs[p]) continue;
      PairTiles& t = *pairs_[p];
      const std::vector<kernels::DeltaSums*> into = sums_of_pair(p, sums);
      kernels::DeltaSums tile_sums;
      kernels::DeltaSums* wanted = into.empty() ? nullptr : &tile_sums;
      if (both_bf16(t)) {
        bf16_delta_of_tile(t, tile, m, wanted);
      } else {
        widened_delta_of_tile(t, tile, m, wanted);
      }
      for (kernels::DeltaSums* s : into) *s += tile_sums;
    }
  }

  // The pairs the groups in `groups` use.
  std::vector<bool> pairs_of(const std::vector<bool>& groups) const {
    std::vector<bool> used(pair_keys_.size(), false);
    for (size_t g = 0; g < groups.size(); ++g) {
      if (!groups[g]) continue;
      for (const size_t p : group_pairs_[g]) used[p] = true;
    }
    return used;
  }

  // Streams the deltas of the groups with statistics passes through their
  // combiners: pass p of every group that needs it shares one read.
  void statistics_passes(const TaskRow& row, std::span<const unsigned> passes, Combiners& combiners,
                         const std::function<void(uint64_t)>& after_block) {
    const unsigned most = passes.empty() ? 0 : *std::max_element(passes.begin(), passes.end());
    for (unsigned pass = 0; pass < most; ++pass) {
      std::vector<bool> planned(row.size(), false), groups(row.size(), false);
      for (size_t g = 0; g < row.size(); ++g) {
        planned[g] = passes[g] > pass;
        groups[g] = planned[g] && (pass == 0 || combiners[g]->needs_pass(pass));
      }
      const std::vector<bool> pairs = pairs_of(groups);
      const uint64_t elements = combined_elements(row);
      bytes_skipped_ += input_bytes(pairs_of(planned), elements) - input_bytes(pairs, elements);
      if (std::ranges::none_of(groups, std::identity{})) continue;
      for (uint64_t first = 0; first < elements; first += block_elements_) {
        const size_t n = std::min<uint64_t>(block_elements_, elements - first);
        read(pairs, first, n);
        observe_block(groups, pairs, pass, combiners, first, n);
        after_block(first + n);
      }
      for (size_t g = 0; g < row.size(); ++g) {
        if (groups[g]) combiners[g]->end_pass(pass);
      }
    }
  }

  std::span<const float* const> deltas(size_t group) const { return deltas_[group]; }
  // The raw block last read of input `i` (post or pre) of group `group`'s vector `vector`.
  std::span<const std::byte> last_block(size_t group, size_t vector, bool pre) const {
    const PairTiles& t = *pairs_[group_pairs_[group][vector]];
    return readers_[pre ? *t.pre : t.post]->last_block();
  }
  const StageTimes& times() const { return times_; }

  uint64_t bytes_read() const {
    uint64_t n = 0;
    for (const auto& r : readers_) n += r->bytes_read();
    return n;
  }
  // Planned bytes of the statistics passes no combiner needed.
  uint64_t bytes_skipped() const { return bytes_skipped_; }

 private:
  size_t reader_of(const ModelTensor* tensor) {
    for (size_t i = 0; i < tensors_.size(); ++i) {
      if (tensors_[i] == tensor) return i;
    }
    tensors_.push_back(tensor);
    if (readers_.size() < tensors_.size()) readers_.push_back(std::make_unique<TensorBlockReader>(block_elements_));
    return tensors_.size() - 1;
  }

  // Of `sums`, those of the groups whose first vector is pair `p`.
  std::vector<kernels::DeltaSums*> sums_of_pair(size_t p, std::span<kernels::DeltaSums* const> sums) const {
    std::vector<kernels::DeltaSums*> out;
    for (size_t g = 0; g < sums.size(); ++g) {
      if (sums[g] && !group_pairs_[g].empty() && group_pairs_[g].front() == p) out.push_back(sums[g]);
    }
    return out;
  }

  // A bf16 pair's delta tile, read from the raw tiles in one pass, with the
  // tile's sums into `sums` unless it is null.
  void bf16_delta_of_tile(PairTiles& t, size_t tile, size_t m, kernels::DeltaSums* sums) const {
    const uint16_t* post = bf16_tile(t.post, tile);
    const uint16_t* pre = bf16_tile(*t.pre, tile);
    if (sums) {
      kernels::bf16_difference_with_sums(post, pre, t.delta.get(), m, *sums);
    } else {
      kernels::bf16_difference(post, pre, t.delta.get(), m);
    }
  }

  // Any other pair's delta tile: post and pre widened to f32 (a saved
  // vector has no pre), with the tile's sums into `sums` unless it is null.
  void widened_delta_of_tile(PairTiles& t, size_t tile, size_t m, kernels::DeltaSums* sums) const {
    readers_[t.post]->widen(tile, std::span(t.delta.get(), m));
    if (t.pre) readers_[*t.pre]->widen(tile, std::span(t.pre_values.get(), m));
    if (sums) kernels::accumulate_delta_sums(t.pre ? t.pre_values.get() : zeros_.get(), t.delta.get(), nullptr, m, *sums);
    if (t.pre) kernels::subtract(t.delta.get(), t.pre_values.get(), t.delta.get(), m);
  }

  bool both_bf16(const PairTiles& t) const {
    return t.pre && tensors_[t.post]->info->dtype == DType::kBF16 && tensors_[*t.pre]->info->dtype == DType::kBF16;
  }

  // Elements [tile, ...) of the bf16 block reader `reader` read last (its buffer is aligned).
  const uint16_t* bf16_tile(size_t reader, size_t tile) const {
    return reinterpret_cast<const uint16_t*>(readers_[reader]->last_block().data()) + tile;
  }

  size_t pair_of(const TaskVector& v) {
    const std::pair key{v.post, v.pre};
    for (size_t p = 0; p < pair_keys_.size(); ++p) {
      if (pair_keys_[p] == key) return p;
    }
    pair_keys_.push_back(key);
    if (pairs_.size() < pair_keys_.size()) pairs_.push_back(std::make_unique<PairTiles>());
    PairTiles& t = *pairs_[pair_keys_.size() - 1];
    t.post = reader_of(v.post);
    t.pre = v.pre ? std::optional(reader_of(v.pre)) : std::nullopt;
    return pair_keys_.size() - 1;
  }

  // Bytes of `elements` elements of every distinct input tensor of `pairs`.
  uint64_t input_bytes(const std::vector<bool>& pairs, uint64_t elements) const {
    std::vector<bool> counted(tensors_.size(), false);
    uint64_t bytes = 0;
    const auto count = [&](size_t reader) {
      if (counted[reader]) return;
      counted[reader] = true;
      bytes += bytes_of(tensors_[reader]->info->dtype, elements);
    };
    for (size_t p = 0; p < pair_keys_.size(); ++p) {
      if (!pairs[p]) continue;
      count(pairs_[p]->post);
      if (pairs_[p]->pre) count(*pairs_[p]->pre);
    }
    return bytes;
  }

  void observe_block(const std::vector<bool>& groups, const std::vector<bool>& pairs, unsigned pass,
                     Combiners& combiners, uint64_t first, size_t n) {
    const ScopeTimer timer(times_.compute_s);
    for (uint64_t tile = 0; tile < n; tile += kTileElements) {
      const size_t m = std::min<uint64_t>(kTileElements, n - tile);
      deltas_of_tile(pairs, tile, m);
      for (size_t g = 0; g < groups.size(); ++g) {
        if (!groups[g]) continue;
        for (size_t i = 0; i < deltas_[g].size(); ++i) {
          combiners[g]->observe(pass, i, first + tile, std::span<const float>(deltas_[g][i], m));
        }
      }
    }
  }

  size_t block_elements_;
  std::vector<std::unique_ptr<TensorBlockReader>> readers_;  // grown as rows need, reused
  std::vector<const ModelTensor*> tensors_;                   // what each reader reads in this row
  std::vector<std::unique_ptr<PairTiles>> pairs_;             // grown as rows need, reused
  std::vector<std::pair<const ModelTensor*, const ModelTensor*>> pair_keys_;  // (post, pre) of this row's pairs
  std::vector<std::vector<size_t>> group_pairs_;              // per group: the pair of each vector
  std::vector<std::vector<const float*>> deltas_;             // per group: each vector's delta tile
  hwy::AlignedFreeUniquePtr<float[]> zeros_ = tile_buffer();
  StageTimes times_;
  uint64_t bytes_skipped_ = 0;
};

struct TaskExecutor::Buffers {
  TensorBlockReader base{kMergeBlockElements};
  RowStreams vectors;
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

uint64_t row_bytes_to_read(const TaskRow& row, std::span<const OutputGroup> groups) {
  const TensorTask& first = *row.front();
  uint64_t bytes = first.base ? first.base->info->byte_size() : 0;
  std::map<const ModelTensor*, unsigned> reads;  // per distinct input tensor: passes that read it
  for (size_t g = 0; g < row.size(); ++g) {
    if (row[g]->copied()) continue;
    const unsigned passes = 1 + statistics_passes(*groups[g].method, *row[g], *groups[g].params);
    for (const TaskVector& v : row[g]->vectors) {
      reads[v.post] = std::max(reads[v.post], passes);
      if (v.pre) reads[v.pre] = std::max(reads[v.pre], passes);
    }
  }
  const uint64_t combined = combined_elements(row);
  for (const auto& [tensor, passes] : reads) bytes += passes * bytes_of(tensor->info->dtype, combined);
  return bytes;
}

std::vector<ReadStretch> read_path(std::span<const TaskRow> rows, std::span<const OutputGroup> groups) {
  std::vector<ReadStretch> path;
  for (const TaskRow& row : rows) {
    const TensorTask& first_task = *row.front();
    const uint64_t total = first_task.generated.empty() ? first_task.element_count() : 0;
    const uint64_t combined = combined_elements(row);
    ReadStretch statistics{.first = 0, .elements = combined}, inputs{.first = 0, .elements = combined};
    const auto add = [](ReadStretch& stretch, const ModelTensor* t) {
      if (t && std::ranges::find(stretch.tensors, t) == stretch.tensors.end()) stretch.tensors.push_back(t);
    };
    for (size_t g = 0; g < row.size(); ++g) {
      const TensorTask* task = row[g];
      if (task->copied()) continue;
      const bool has_passes = statistics_passes(*groups[g].method, *task, *groups[g].params) > 0;
      add(inputs, task->base);
      for (const TaskVector& v : task->vectors) {
        for (const ModelTensor* t : {v.post, v.pre}) {
          add(inputs, t);
          if (has_passes) add(statistics, t);
        }
      }
    }
    if (statistics.tensors.empty()) statistics.elements = 0;
    path.push_back(std::move(statistics));
    path.push_back(std::move(inputs));
    ReadStretch rest{.first = combined, .elements = total - combined};
    if (first_task.base && rest.elements > 0) rest.tensors.push_back(first_task.base);
    path.push_back(std::move(rest));
  }
  return path;
}

namespace {

OutputGroup single_group(const MergeMethod& method, const MethodParams& params, std::vector<double> weights) {
  OutputGroup group{&method, &params, std::move(weights), {}};
  for (size_t k = 0; k < group.weights.size(); ++k) group.writers.push_back(k);
  return group;
}

}  // namespace

TaskExecutor::TaskExecutor(std::vector<OutputGroup> groups, AsyncSink& sink, std::vector<TensorFileWriter*> writers)
    : groups_(std::move(groups)),
      sink_(sink),
      writers_(std::move(writers)),
      buffers_(std::make_unique<Buffers>()),
      vector_sums_(groups_.size()),
      nonfinite_(writers_.size()) {}

TaskExecutor::TaskExecutor(const MergeMethod& method, const MethodParams& params, std::vector<double> weights,
                           AsyncSink& sink, std::vector<TensorFileWriter*> writers)
    : TaskExecutor({single_group(method, params, std::move(weights))}, sink, std::move(writers)) {}

TaskExecutor::~TaskExecutor() = default;

uint64_t TaskExecutor::bytes_read() const { return buffers_->bytes_read() + lookahead_bytes_; }

uint64_t TaskExecutor::bytes_skipped() const { return buffers_->vectors.bytes_skipped() + lookahead_skipped_; }

uint64_t TaskExecutor::bytes_done() const { return bytes_read() + bytes_skipped(); }

StageTimes TaskExecutor::stage_times() const {
  StageTimes times = times_;
  times += buffers_->vectors.times();
  return times;
}

void TaskExecutor::run(const TensorTask& task, const std::function<void(uint64_t)>& progress) {
  const TaskRow row{&task};
  run_all(std::span(&row, 1), 0, progress);
}

// Combiners whose statistics passes are done, and the bytes those passes
// read and skipped (or the error they ended with).
struct TaskExecutor::Prepared {
  Combiners combiners;
  uint64_t bytes_read = 0, bytes_skipped = 0;
  std::exception_ptr error;
};

// The rows' statistics passes, run ahead of the executor's thread by
// `threads` workers, each with readers of its own: a worker takes the next
// row nobody has taken that needs passes, at most kRowsAhead rows beyond the
// one being written. The executor's thread prepares a row itself when no
// worker has taken it yet, and waits for it otherwise. The destructor stops
// and joins the workers (also when the executor's thread throws).
class TaskExecutor::Lookahead {
 public:
  static constexpr size_t kRowsAhead = 32;
  // A worker's blocks: it only runs statistics passes, which need no larger
  // ones, and its readers' buffers add to the merge's memory.
  static constexpr size_t kLookaheadBlockElements = kMergeBlockElements / 4;

  Lookahead(const TaskExecutor& executor, std::span<const TaskRow> rows, unsigned threads)
      : executor_(executor), rows_(rows) {
    for (unsigned i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }

  ~Lookahead() {
    {
      const std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    changed_.notify_all();
    for (auto& w : workers_) w.join();
  }

  Lookahead(const Lookahead&) = delete;
  Lookahead& operator=(const Lookahead&) = delete;

  // Row `row`'s prepared combiners, if a worker took it (waiting for them);
  // nullopt when the caller is to prepare it. Rows are asked for in order.
  std::optional<Prepared> take(size_t row) {
    std::unique_lock lock(mutex_);
    current_ = row;
    changed_.notify_all();
    if (next_ <= row) {
      next_ = row + 1;
      return std::nullopt;
    }
    changed_.wait(lock, [&] { return done_.contains(row); });
    Prepared prepared = std::move(done_.at(row));
    done_.erase(row);
    return prepared;
  }

 private:
  void work() {
    RowStreams streams(kLookaheadBlockElements);
    for (;;) {
      size_t row = 0;
      {
        std::unique_lock lock(mutex_);
        changed_.wait(lock, [&] { return stopping_ || (next_ < rows_.size() && next_ < current_ + kRowsAhead); });
        if (stopping_) return;
        while (next_ < rows_.size() && !needs_passes(next_)) ++next_;
        if (next_ >= rows_.size() || next_ >= current_ + kRowsAhead) continue;
        row = next_++;
      }
      Prepared prepared = prepare(row, streams);
      {
        const std::lock_guard lock(mutex_);
        done_.emplace(row, std::move(prepared));
      }
      changed_.notify_all();
    }
  }

  // Whether a worker should prepare the row; a row whose passes cannot be
  // counted is left to the executor's thread, which then meets the error.
  bool needs_passes(size_t row) const {
    try {
      return executor_.row_passes(rows_[row]) > 0;
    } catch (...) {
      return false;
    }
  }

  Prepared prepare(size_t row, RowStreams& streams) const {
    const uint64_t read = streams.bytes_read(), skipped = streams.bytes_skipped();  // over every row they served
    Prepared prepared;
    try {
      prepared.combiners = executor_.prepare(rows_[row], streams, [](uint64_t) {});
    } catch (...) {
      prepared.error = std::current_exception();
    }
    prepared.bytes_read = streams.bytes_read() - read;
    prepared.bytes_skipped = streams.bytes_skipped() - skipped;
    return prepared;
  }

  const TaskExecutor& executor_;
  std::span<const TaskRow> rows_;
  std::mutex mutex_;
  std::condition_variable changed_;
  size_t next_ = 0;     // the first row no one has taken
  size_t current_ = 0;  // the row the executor's thread is at
  std::map<size_t, Prepared> done_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;  // last: started once the rest is set up
};

void TaskExecutor::run_all(std::span<const TaskRow> rows, unsigned lookahead,
                           const std::function<void(uint64_t)>& progress) {
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i].size() != groups_.size()) {
      fail(ErrorKind::kUsage, "tensor row {} has {} tasks for {} output groups", i, rows[i].size(), groups_.size());
    }
  }
  std::optional<Lookahead> ahead;
  if (lookahead > 0) ahead.emplace(*this, rows, lookahead);
  ReadAhead read_ahead(read_path(rows, groups_));
  for (size_t i = 0; i < rows.size(); ++i) {
    Combiners combiners;
    if (ahead && row_passes(rows[i]) > 0) {
      if (std::optional<Prepared> prepared = ahead->take(i)) {
        if (prepared->error) std::rethrow_exception(prepared->error);
        combiners = std::move(prepared->combiners);
        lookahead_bytes_ += prepared->bytes_read;
        lookahead_skipped_ += prepared->bytes_skipped;
      }
    }
    run_row(i, rows[i], std::move(combiners), read_ahead, progress);
  }
}

// The most statistics passes a group needs for the row.
unsigned TaskExecutor::row_passes(const TaskRow& row) const {
  unsigned most = 0;
  for (size_t g = 0; g < row.size(); ++g) most = std::max(most, statistics_passes(*groups_[g].method, *row[g], *groups_[g].params));
  return most;
}

TaskExecutor::Combiners TaskExecutor::prepare(const TaskRow& row, RowStreams& streams,
                                              const std::function<void(uint64_t)>& after_block) const {
  Combiners combiners(row.size());
  std::vector<unsigned> passes(row.size(), 0);
  for (size_t g = 0; g < row.size(); ++g) {
    if (row[g]->copied()) continue;
    const TaskContext context(*row[g], *groups_[g].params);
    combiners[g] = groups_[g].method->begin_tensor(context.get());
    passes[g] = groups_[g].method->statistics_passes(context.get());
  }
  streams.start(row);
  streams.statistics_passes(row, passes, combiners, after_block);
  return combiners;
}

void TaskExecutor::run_row(size_t index, const TaskRow& row, Combiners combiners, ReadAhead& read_ahead,
                           const std::function<void(uint64_t)>& progress) {
  const TensorTask& first_task = *row.front();
  if (!first_task.generated.empty()) return write_generated(first_task);
  const uint64_t total = first_task.element_count();
  const uint64_t step = block_elements(first_task);
  const uint64_t combined = combined_elements(row);
  if (combined > 0) {
    if (combiners.empty()) {
      combiners = prepare(row, buffers_->vectors, [&](uint64_t elements) {  // starts the streams
        read_ahead.reached(3 * index, elements);
        progress(bytes_done());
      });
    } else {
      buffers_->vectors.start(row);  // prepared ahead with other streams
    }
    for (uint64_t first = 0; first < combined; first += step) {
      const uint64_t n = std::min<uint64_t>(step, combined - first);
      combine_block(row, combiners, first, n);
      read_ahead.reached(3 * index + 1, first + n);
      progress(bytes_done());
    }
  }
  for (uint64_t first = combined; first < total; first += step) {
    const uint64_t n = std::min<uint64_t>(step, total - first);
    copy_block(first_task, first, n);
    read_ahead.reached(3 * index + 2, first + n - combined);
    progress(bytes_done());
  }
}

size_t TaskExecutor::acquire_buffer() {
  const ScopeTimer timer(times_.write_wait_s);
  return sink_.acquire();
}

void TaskExecutor::combine_block(const TaskRow& row, Combiners& combiners, uint64_t first, size_t n) {
  Buffers& b = *buffers_;
  const TensorTask& task = *row.front();  // what every task of the row agrees on
  std::vector<bool> combining(row.size());
  for (size_t g = 0; g < row.size(); ++g) combining[g] = !row[g]->copied();
  const std::vector<bool> pairs = b.vectors.pairs_of(combining);
  b.vectors.read(pairs, first, n);
  if (task.base) {
    const ScopeTimer timer(times_.read_s);
    b.base.read(*task.base, first, n);
  }
  std::vector<size_t> out(writers_.size());
  std::vector<TensorFileWriter*> copy_writers;
  for (size_t g = 0; g < row.size(); ++g) {
    for (const size_t k : groups_[g].writers) {
      if (combining[g]) out[k] = acquire_buffer();
      else copy_writers.push_back(writers_[k]);
    }
  }
  const size_t copy_buffer = copy_writers.empty() ? 0 : acquire_buffer();
  const ScopeTimer timer(times_.compute_s);
  std::vector<kernels::DeltaSums*> sums(row.size(), nullptr);
  const std::string kind(module_kind_name(module_kind(task.name)));
  for (size_t g = 0; g < row.size(); ++g) {
    if (combining[g]) sums[g] = &vector_sums_[g][kind];
  }
  std::vector<uint64_t> nonfinite(writers_.size(), 0);  // per writer, counted while each tile is still in cache
  for (uint64_t tile = 0; tile < n; tile += kTileElements) {
    const size_t m = std::min<uint64_t>(kTileElements, n - tile);
    b.vectors.deltas_of_tile(pairs, tile, m, sums);
    if (task.base) b.base.widen(tile, std::span(b.base_tile.get(), m));
    for (size_t g = 0; g < row.size(); ++g) {
      if (!combining[g]) continue;
      const float* delta = combiners[g]->combine(first + tile, m, b.vectors.deltas(g), b.scratch.get());
      for (size_t j = 0; j < groups_[g].writers.size(); ++j) {
        const float* result = delta;
        if (task.base) {
          const auto w = static_cast<float>(groups_[g].weights[j] * row[g]->scale);
          kernels::add_scaled(b.base_tile.get(), w, delta, b.out.get(), m);
          result = b.out.get();
        }
        const size_t k = groups_[g].writers[j];
        std::byte* encoded = sink_.data(out[k]) + bytes_of(task.out_dtype, tile);
        encode_from_f32(task.out_dtype, std::span(result, m), encoded);
        nonfinite[k] += count_nonfinite(task.out_dtype, encoded, m);
      }
    }
  }
  for (size_t g = 0; g < row.size(); ++g) {
    if (!combining[g]) continue;
    for (const size_t k : groups_[g].writers) {
      if (const uint64_t fresh = new_nonfinite(row, g, sink_.data(out[k]), n, nonfinite[k])) {
        record_nonfinite(k, task.name, fresh);
      }
      interleave_rows(task, sink_.data(out[k]), n);
      sink_.submit(out[k], bytes_of(task.out_dtype, n), std::span(&writers_[k], 1));
    }
  }
  if (!copy_writers.empty()) {
    copy_from_base(task, n, sink_.data(copy_buffer));
    interleave_rows(task, sink_.data(copy_buffer), n);
    sink_.submit(copy_buffer, bytes_of(task.out_dtype, n), copy_writers);
  }
}

// Only consulted when an output block holds NaN/Inf (rare).
uint64_t TaskExecutor::inputs_nonfinite(const TaskRow& row, size_t group, size_t n) const {
  const Buffers& b = *buffers_;
  const TensorTask& task = *row[group];
  uint64_t bad = task.base ? count_nonfinite(task.base->info->dtype, b.base.last_block().data(), n) : 0;
  for (size_t i = 0; i < task.vectors.size(); ++i) {
    bad += count_nonfinite(task.vectors[i].post->info->dtype, b.vectors.last_block(group, i, false).data(), n);
    if (task.vectors[i].pre) {
      bad += count_nonfinite(task.vectors[i].pre->info->dtype, b.vectors.last_block(group, i, true).data(), n);
    }
  }
  return bad;
}

// Of the `found` NaN/Inf values of an output block, those at elements where
// every input is finite: all of them when no input of the block holds NaN or
// Inf (the common case), else counted element by element (a method may
// spread one input NaN over a tensor, through a norm or an l1 sum). A
// quantized block with one such element is NaN whole (docs/gguf.md), so
// every element of it is excused.
uint64_t TaskExecutor::new_nonfinite(const TaskRow& row, size_t group, const std::byte* out, size_t n,
                                     uint64_t found) const {
  if (found == 0 || inputs_nonfinite(row, group, n) == 0) return found;
  const Buffers& b = *buffers_;
  const TensorTask& task = *row[group];
  std::vector<bool> excused(n, false);
  const auto excuse = [&](DType dtype, std::span<const std::byte> block) {
    const std::vector<bool> flags = nonfinite_flags(dtype, block.data(), n);
    for (size_t j = 0; j < n; ++j) excused[j] = excused[j] || flags[j];
  };
  if (task.base) excuse(task.base->info->dtype, b.base.last_block());
  for (size_t i = 0; i < task.vectors.size(); ++i) {
    excuse(task.vectors[i].post->info->dtype, b.vectors.last_block(group, i, false));
    if (task.vectors[i].pre) excuse(task.vectors[i].pre->info->dtype, b.vectors.last_block(group, i, true));
  }
  if (is_block_type(task.out_dtype)) {
    const size_t block = dtype_block_elements(task.out_dtype);
    for (size_t start = 0; start < n; start += block) {
      const auto first = excused.begin() + static_cast<ptrdiff_t>(start);
      const auto last = excused.begin() + static_cast<ptrdiff_t>(std::min(n, start + block));
      if (std::find(first, last, true) != last) std::fill(first, last, true);
    }
  }
  const std::vector<bool> produced = nonfinite_flags(task.out_dtype, out, n);
  uint64_t fresh = 0;
  for (size_t j = 0; j < n; ++j) fresh += produced[j] && !excused[j] ? 1 : 0;
  return fresh;
}

// Elements δ does not touch: the base's values, converted only if the output
// dtype differs (so raw bytes, NaN payloads included, survive).
void TaskExecutor::copy_block(const TensorTask& task, uint64_t first, size_t n) {
  Buffers& b = *buffers_;
  const size_t buffer = acquire_buffer();
  if (copies_raw(task)) {
    const ScopeTimer timer(times_.read_s);
    b.base.read_into(*task.base, first, n, sink_.data(buffer));
  } else {
    {
      const ScopeTimer timer(times_.read_s);
      b.base.read(*task.base, first, n);
    }
    const ScopeTimer timer(times_.compute_s);
    copy_from_base(task, n, sink_.data(buffer));
  }
  interleave_rows(task, sink_.data(buffer), n);
  sink_.submit(buffer, bytes_of(task.out_dtype, n), writers_);
}

// The base's block read last, as the output's `n` elements (converted where
// the dtypes differ).
void TaskExecutor::copy_from_base(const TensorTask& task, size_t n, std::byte* out) {
  Buffers& b = *buffers_;
  if (copies_raw(task)) {
    std::memcpy(out, b.base.last_block().data(), bytes_of(task.out_dtype, n));
    return;
  }
  for (uint64_t tile = 0; tile < n; tile += kTileElements) {
    const size_t m = std::min<uint64_t>(kTileElements, n - tile);
    b.base.widen(tile, std::span(b.base_tile.get(), m));
    encode_from_f32(task.out_dtype, std::span<const float>(b.base_tile.get(), m), out + bytes_of(task.out_dtype, tile));
  }
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
