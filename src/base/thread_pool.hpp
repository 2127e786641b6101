// A fixed set of worker threads for data-parallel loops.
//
// parallel_for(count, fn) calls fn(i) for every i in [0, count), spread over
// the workers and the calling thread, and returns when all calls are done.
// One loop runs at a time (calls from several threads are serialised). The
// first exception thrown by fn is rethrown in the caller after the loop.
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
  size_t size() const { return workers_.size() + 1; }

 private:
  void worker_loop();
  void run_tasks();

  std::vector<std::thread> workers_;
  std::mutex loop_mutex_;  // one parallel_for at a time
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(size_t)>* fn_ = nullptr;
  size_t count_ = 0, next_ = 0, finished_ = 0, generation_ = 0, busy_workers_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
};

// Threads to use when the user does not say: the cores this process may run on.
size_t default_thread_count();

}  // namespace rvec
