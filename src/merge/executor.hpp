// The merge executor: streams tensor tasks block by block from the input
// models to the file writers of every output, applying a MergeMethod.
//
// Per block of up to kBlockElements elements: one pread per input (a
// ReadAhead thread keeps the disk reading the rows' inputs up to 256 MiB
// ahead), then cache-sized tiles are
// widened to f32, each vector's delta d_i = post_i - pre_i is formed, the
// method's combiner turns the deltas into δ, and for every output k
//   out_k = round(base + f32(f32(w_k * scale) * δ))     (base: the target)
// or out = round(δ) when the task has no base (extract), is encoded straight
// (rounded, or quantised block by block for GGUF's Q types) into a buffer of
// the AsyncSink, whose thread appends it to the files while
// the next block is computed. Methods that need statistics passes get the
// tensor's deltas streamed through observe() that many times first.
//
// Several merges of the same target (other methods, weights, vectors or
// rules: a sweep's variants and ablations) can share the pass: each input
// tensor is read once per block for all of them.
//
// Memory: one raw block per distinct input tensor (4 MiB each) and a few
// 64 KiB f32 tiles per vector, whatever the model size, plus one set of
// readers per statistics pass run ahead; what is read ahead lives in the page
// cache, not in the process. Not thread-safe: one executor per thread (it
// starts and joins its own lookahead and read-ahead threads).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "hf/model_folder.hpp"
#include "hf/read_ahead.hpp"
#include "io/async_sink.hpp"
#include "merge/method.hpp"
#include "numeric/kernels.hpp"

namespace rvec {

// One vector as a task sees it.
struct TaskVector {
  const ModelTensor* post = nullptr;  // the fine-tuned model's tensor, or a saved vector's
  const ModelTensor* pre = nullptr;   // the base model's; null when `post` is a saved vector
  double weight = 1.0;                // w_i, this vector's share before the output's w
  MethodParams params;                // this vector's method values for this tensor; empty: the merge's
};

// One output tensor and where its values come from.
struct TensorTask {
  std::string name;
  DType out_dtype;
  std::vector<uint64_t> out_shape;
  const ModelTensor* base = nullptr;  // the target; null when the output is δ itself (extract)
  std::vector<TaskVector> vectors;    // empty when the tensor is copied from `base`
  uint64_t combined_elements = 0;     // leading elements that receive δ (shared vocabulary rows)
  double scale = 1.0;                 // from the first matching rule
  std::string rule;                   // that rule, described
  std::string note;                   // row policy, or why copied
  // >0: the output's rows are reordered within each of this many heads as
  // llama.cpp's Llama converter does (GGUF q/k; hf/gguf_export.hpp).
  uint64_t interleave_heads = 0;
  // Values written as they are, read from no input (a tensor llama.cpp's
  // converter generates: Llama 3's rope_freqs.weight); one block at most.
  std::vector<float> generated;

  uint64_t element_count() const;
  bool copied() const { return combined_elements == 0; }
};

// Where a merge's time goes, per stage. The executor's thread reads, computes
// and waits for free output buffers; the writer thread appends; finishing a
// file syncs it.
struct StageTimes {
  double read_s = 0;        // preads of the inputs (waiting for the disk when cold)
  double compute_s = 0;     // widening, combining, encoding
  double write_wait_s = 0;  // waiting for the writer to free an output buffer
  double write_s = 0;       // the writer thread's appends (copies into the page cache, writeback throttling)
  double sync_s = 0;        // fsync of finished files
  uint64_t bytes_appended = 0;

  StageTimes& operator+=(const StageTimes& o);
};

// A task's TensorContext together with the arrays it points into (so not
// copyable). `merge_params` must outlive it.
class TaskContext {
 public:
  TaskContext(const TensorTask& task, const MethodParams& merge_params);
  TaskContext(const TaskContext&) = delete;
  TaskContext& operator=(const TaskContext&) = delete;
  const TensorContext& get() const { return context_; }

 private:
  std::vector<double> weights_;
  std::vector<MethodParams> params_;
  TensorContext context_;
};

// The statistics passes `method` needs for the task (0 for a copied task).
unsigned statistics_passes(const MergeMethod& method, const TensorTask& task, const MethodParams& merge_params);

// Output values that became NaN/Inf though no input value was: (tensor, count).
using NonfiniteCounts = std::vector<std::pair<std::string, uint64_t>>;

inline constexpr size_t kMergeBlockElements = 1 << 20;  // 4 MiB of f32

// The outputs of one merge among those an executor writes in one pass: its
// method, its merge-wide values, and the w of each of its outputs.
struct OutputGroup {
  const MergeMethod* method = nullptr;
  const MethodParams* params = nullptr;  // must outlive the executor
  std::vector<double> weights;           // w of each output
  std::vector<size_t> writers;           // the executor's writer of each output
};

// One output tensor as every group of an executor sees it: row[g] is group
// g's task. The tasks of a row name the same output tensor (name, dtype,
// shape, target tensor, combined range, row order); each group may combine
// its own vectors, with its own weights, or copy the tensor.
using TaskRow = std::vector<const TensorTask*>;

// Bytes a row's pass reads at most: the target tensor once, each distinct
// input tensor of the combining groups once, and again for each statistics
// pass some group that reads it may need.
uint64_t row_bytes_to_read(const TaskRow& row, std::span<const OutputGroup> groups);

// What the executor's thread reads of the rows' inputs, in order, for its
// ReadAhead: stretch 3i holds the vectors (post and pre) of row i's tasks
// that take statistics passes, read once for the first pass (further passes,
// rare, re-read them from the page cache), empty when none does; stretch
// 3i + 1 every input of the combining tasks over the combined elements, for
// the element pass; stretch 3i + 2 the target's rest (its whole tensor when
// every task copies).
std::vector<ReadStretch> read_path(std::span<const TaskRow> rows, std::span<const OutputGroup> groups);

class TaskExecutor {
 public:
  // The groups' writers must outlive the executor; `sink` carries the bytes to
  // them. Every writer belongs to exactly one group.
  TaskExecutor(std::vector<OutputGroup> groups, AsyncSink& sink, std::vector<TensorFileWriter*> writers);
  // One group: `weights[k]` is the w of the output `writers[k]` writes.
  TaskExecutor(const MergeMethod& method, const MethodParams& params, std::vector<double> weights, AsyncSink& sink,
               std::vector<TensorFileWriter*> writers);
  ~TaskExecutor();

  // Streams one task into every writer (an executor of one group).
  void run(const TensorTask& task, const std::function<void(uint64_t)>& progress);
  // Streams the rows in order. Each input tensor of a row is read once per
  // block for all groups (and once per statistics pass some group needs).
  // With `lookahead` > 0, that many threads (with readers of their own) run
  // the statistics passes of later rows meanwhile, up to 32 rows ahead; the
  // bytes written do not change.
  void run_all(std::span<const TaskRow> rows, unsigned lookahead, const std::function<void(uint64_t)>& progress);

  uint64_t bytes_read() const;
  // Bytes the plan counted for statistics passes that turned out unneeded
  // (TensorCombiner::needs_pass), and read + skipped: what the plan's count
  // is measured against. Progress callbacks receive bytes_done().
  uint64_t bytes_skipped() const;
  uint64_t bytes_done() const;
  // ||pre||^2 (base_sq) and ||v||^2 (a_sq) of group `group`'s first vector per module kind.
  const std::map<std::string, kernels::DeltaSums>& vector_sums(size_t group = 0) const { return vector_sums_[group]; }
  // New NaN/Inf values per writer.
  const std::vector<NonfiniteCounts>& nonfinite() const { return nonfinite_; }
  // read_s, compute_s and write_wait_s of the work so far on the executor's
  // thread (statistics passes run ahead overlap it and are not counted).
  StageTimes stage_times() const;

 private:
  class RowStreams;
  struct Buffers;
  struct Prepared;
  class Lookahead;
  using Combiners = std::vector<std::unique_ptr<TensorCombiner>>;
  // A combiner per group that combines the row (null for the others), their
  // statistics passes done with `streams`; `after_block` is told after each
  // block how many elements the pass has read.
  Combiners prepare(const TaskRow& row, RowStreams& streams, const std::function<void(uint64_t)>& after_block) const;
  unsigned row_passes(const TaskRow& row) const;
  // Row `index` of run_all()'s rows; tells `read_ahead` how far it has read.
  void run_row(size_t index, const TaskRow& row, Combiners combiners, ReadAhead& read_ahead,
               const std::function<void(uint64_t)>& progress);
  void combine_block(const TaskRow& row, Combiners& combiners, uint64_t first, size_t n);
  void copy_block(const TensorTask& task, uint64_t first, size_t n);
  void copy_from_base(const TensorTask& task, size_t n, std::byte* out);
  void write_generated(const TensorTask& task);
  void interleave_rows(const TensorTask& task, std::byte* block, size_t n);
  size_t acquire_buffer();
  uint64_t inputs_nonfinite(const TaskRow& row, size_t group, size_t n) const;
  uint64_t new_nonfinite(const TaskRow& row, size_t group, const std::byte* out, size_t n, uint64_t found) const;
  void record_nonfinite(size_t output, const std::string& tensor, uint64_t count);

  std::vector<OutputGroup> groups_;
  AsyncSink& sink_;
  std::vector<TensorFileWriter*> writers_;
  std::unique_ptr<Buffers> buffers_;
  uint64_t lookahead_bytes_ = 0;    // read by the statistics passes run ahead
  uint64_t lookahead_skipped_ = 0;  // skipped by them
  std::vector<std::map<std::string, kernels::DeltaSums>> vector_sums_;  // per group
  std::vector<NonfiniteCounts> nonfinite_;
  StageTimes times_;
};

}  // namespace rvec
