// Keeping the disk busy ahead of a reader whose path through the inputs is
// known in advance: a merge walks its tensor rows in order, reading the
// inputs of a row block by block in lockstep.
//
// A thread of its own asks the kernel for the next bytes of that path
// (posix_fadvise WILLNEED, one chunk of every input of a stretch in turn) up
// to `window_bytes` beyond the position the reader last reported, so reads
// from the disk stay in flight while the reader computes and while the
// writer's output competes for the disk. The kernel's submission of those
// reads may block; it blocks this thread, not the reader. Nothing is copied:
// the bytes land in the page cache, where the reader's preads find them.
//
// A hint only: the reader reads exactly what it did before, so results and
// errors do not change (a file that shrank is met by the reader's pread).
//
// Thread-safety: reached() is called by one reader thread. Lifetime: the
// tensors of the stretches must outlive the object; the destructor stops and
// joins the thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "hf/model_folder.hpp"

namespace rvec {

// Inputs read in lockstep: elements [first, first + elements) of each tensor.
struct ReadStretch {
  std::vector<const ModelTensor*> tensors;
  uint64_t first = 0;
  uint64_t elements = 0;
};

class ReadAhead {
 public:
  static constexpr uint64_t kDefaultWindowBytes = 256ull << 20;
  // Asks for `bytes` bytes of `tensor` from byte `offset` (tests record the calls).
  using Ask = std::function<void(const ModelTensor& tensor, uint64_t offset, uint64_t bytes)>;
  // Each tensor is asked for in chunks of this many elements, in turn.
  static constexpr uint64_t kChunkElements = 1 << 20;

  // `ask` defaults to SafetensorsFile::prefetch.
  explicit ReadAhead(std::vector<ReadStretch> stretches, uint64_t window_bytes = kDefaultWindowBytes, Ask ask = {});
  ~ReadAhead();
  ReadAhead(const ReadAhead&) = delete;
  ReadAhead& operator=(const ReadAhead&) = delete;

  // The reader has read the first `elements` of stretch `stretch` (in every
  // tensor of it) and everything before that stretch. Positions that go back
  // (a second pass over a stretch) are ignored.
  void reached(size_t stretch, uint64_t elements);

 private:
  void run();
  uint64_t position_of(size_t stretch, uint64_t elements) const;
  bool wait_for_room(uint64_t ahead);

  std::vector<ReadStretch> stretches_;
  std::vector<uint64_t> starts_;  // byte position of each stretch's start, then of the end
  uint64_t window_bytes_;
  Ask ask_;
  std::mutex mutex_;
  std::condition_variable moved_;
  uint64_t reached_ = 0;  // byte position the reader reported
  bool stopping_ = false;
  std::thread thread_;  // last: started once the rest is set up
};

}  // namespace rvec
