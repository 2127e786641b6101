#include "base/thread_pool.hpp"

#include <sched.h>

#include <algorithm>
#include <utility>

namespace rvec {

ThreadPool::ThreadPool(size_t threads) {
  for (size_t i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& worker : workers_) worker.join();
}

// Claims indices one at a time until none are left; an error skips the rest.
void ThreadPool::run_tasks(size_t worker) {
  std::unique_lock lock(mutex_);
  while (next_ < count_) {
    const size_t index = next_++;
    lock.unlock();
    try {
      (*fn_)(worker, index);
      lock.lock();
    } catch (...) {
      lock.lock();
      if (!error_) error_ = std::current_exception();
      finished_ += count_ - next_;
      next_ = count_;
    }
    ++finished_;
  }
  if (finished_ == count_) done_.notify_all();
}

void ThreadPool::worker_loop(size_t worker) {
  size_t seen = 0;
  std::unique_lock lock(mutex_);
  while (true) {
    wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
    if (stopping_) return;
    seen = generation_;
    ++busy_workers_;
    lock.unlock();
    run_tasks(worker);
    lock.lock();
    if (--busy_workers_ == 0) done_.notify_all();
  }
}

void ThreadPool::parallel_for(size_t count, const std::function<void(size_t)>& fn) {
  parallel_for_workers(count, [&fn](size_t, size_t i) { fn(i); });
}

void ThreadPool::parallel_for_workers(size_t count, const std::function<void(size_t, size_t)>& fn) {
  if (count == 0) return;
  std::lock_guard loop_lock(loop_mutex_);
  if (workers_.empty() || count == 1) {
    for (size_t i = 0; i < count; ++i) fn(0, i);
    return;
  }
  {
    std::lock_guard lock(mutex_);
    fn_ = &fn;
    count_ = count;
    next_ = finished_ = 0;
    error_ = nullptr;
    ++generation_;
  }
  wake_.notify_all();
  run_tasks(0);
  std::unique_lock lock(mutex_);
  // Wait for every task, and for every worker to leave run_tasks(), before fn goes out of scope.
  done_.wait(lock, [&] { return finished_ == count_ && busy_workers_ == 0; });
  fn_ = nullptr;
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

size_t default_thread_count() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace rvec
