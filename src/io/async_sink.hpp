// A writer thread for TensorFileWriters, so that the kernel's copy of output
// data into the page cache (a third of a merge's CPU time when done inline)
// runs on another core while the next block is computed.
//
// The caller takes a buffer from the pool, fills it, and submits it to one or
// more writers; the buffer returns to the pool once every writer has appended
// it. Lifetime: buffers are owned by the sink; a buffer must not be touched
// after submit(). drain() waits for all submitted writes and rethrows the
// first error the writer thread met (a full disk, say) in the caller's thread.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include <hwy/aligned_allocator.h>

#include "io/writer.hpp"

namespace rvec {

class AsyncSink {
 public:
  AsyncSink(size_t buffers, size_t buffer_bytes);
  ~AsyncSink();
  AsyncSink(const AsyncSink&) = delete;
  AsyncSink& operator=(const AsyncSink&) = delete;

  // Blocks until a buffer is free; returns its index.
  size_t acquire();
  std::byte* data(size_t buffer) { return buffers_[buffer].get(); }

  // Appends bytes [0, size) of `buffer` to each writer, in submission order.
  void submit(size_t buffer, size_t size, std::span<TensorFileWriter* const> writers);

  // Waits until every submitted write is done; rethrows a writer error.
  void drain();

  // Seconds the writer thread spent in appends, and the bytes it appended;
  // read them after drain().
  double write_seconds() const { return write_seconds_; }
  uint64_t bytes_written() const { return bytes_written_; }

 private:
  struct Job {
    size_t buffer;
    size_t size;
    TensorFileWriter* writer;
  };
  void run();
  void rethrow_locked();

  std::vector<hwy::AlignedFreeUniquePtr<std::byte[]>> buffers_;
  std::vector<size_t> pending_;  // writes outstanding per buffer
  std::vector<size_t> free_;
  std::deque<Job> jobs_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::exception_ptr error_;
  bool stopping_ = false;
  bool busy_ = false;
  double write_seconds_ = 0;  // guarded by mutex_
  uint64_t bytes_written_ = 0;
  std::thread thread_;
};

}  // namespace rvec
