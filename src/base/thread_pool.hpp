// A fixed set of worker threads for data-parallel loops.
//
// parallel_for(count, fn) calls fn(i) for every i in [0, count), spread over
// the workers and the calling thread, and returns when all calls are done.
// One loop runs at a time (calls from several threads are serialised). The
// first exception thrown by fn stops the loop: indices not yet started are
// skipped, and the exception is rethrown in the caller once every call that
// had started has returned.
//
// Thread-safety: parallel_for may be called from any thread; fn must be safe
// to run on several threads at once.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace rvec {

class ThreadPool {
 public:
  // `threads` counts the caller too: 1 runs everything inline.
  explicit ThreadPool(size_t threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  void parallel_for(size_t count, const std::function<void(size_t)>& fn);
  // The same, and fn learns which thread runs it: 0 is the caller, 1 .. size() - 1
  // the workers (for per-thread state such as one HTTP connection each).
  void parallel_for_workers(size_t count, const std::function<void(size_t worker, size_t i)>& fn);
  size_t size() const { return workers_.size() + 1; }

 private:
  void worker_loop(size_t worker);
  void run_tasks(size_t worker);

  std::vector<std::thread> workers_;
  std::mutex loop_mutex_;  // one parallel_for at a time
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(size_t, size_t)>* fn_ = nullptr;
  size_t count_ = 0, next_ = 0, finished_ = 0, generation_ = 0, busy_workers_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
};

// Threads to use when the user does not say: the cores this process may run on.
size_t default_thread_count();

}  // namespace rvec
