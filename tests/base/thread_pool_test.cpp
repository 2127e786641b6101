#include "base/thread_pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

namespace rvec {
namespace {

TEST(ThreadPool, RunsEveryIndexOnceAndNamesTheThread) {
  ThreadPool pool(3);
  std::vector<std::atomic<int>> calls(100);
  std::mutex mutex;
  std::set<size_t> workers;
  pool.parallel_for_workers(calls.size(), [&](size_t worker, size_t i) {
    ++calls[i];
    const std::lock_guard lock(mutex);
    workers.insert(worker);
  });
  for (const auto& c : calls) EXPECT_EQ(c.load(), 1);
  for (size_t w : workers) EXPECT_LT(w, pool.size());
}

TEST(ThreadPool, TheFirstErrorSkipsWhatHasNotStartedAndIsRethrown) {
  ThreadPool pool(2);
  std::atomic<size_t> started{0};
  // Every other call takes 100 us, so the other thread cannot run all the
  // rest before the thrower records its error unless the thrower is kept off
  // the CPU for about half a second (calls that return at once let it, on a
  // busy machine).
  EXPECT_THROW(pool.parallel_for(10'000,
                                 [&](size_t i) {
                                   ++started;
                                   if (i == 3) throw std::runtime_error("three");
                                   std::this_thread::sleep_for(std::chrono::microseconds(100));
                                 }),
               std::runtime_error);
  EXPECT_LT(started.load(), 10'000u);
  // The pool is usable again afterwards.
  std::atomic<size_t> after{0};
  pool.parallel_for(50, [&](size_t) { ++after; });
  EXPECT_EQ(after.load(), 50u);
}

TEST(ThreadPool, OneThreadRunsInlineInOrder) {
  ThreadPool pool(1);
  std::vector<size_t> order;
  pool.parallel_for_workers(5, [&](size_t worker, size_t i) {
    EXPECT_EQ(worker, 0u);
    order.push_back(i);
  });
  EXPECT_EQ(order, (std::vector<size_t>{0, 1, 2, 3, 4}));
}

}  // namespace
}  // namespace rvec
