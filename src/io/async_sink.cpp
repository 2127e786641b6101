#include "io/async_sink.hpp"

#include <chrono>

namespace rvec {

AsyncSink::AsyncSink(size_t buffers, size_t buffer_bytes) : pending_(buffers, 0) {
  for (size_t i = 0; i < buffers; ++i) {
    buffers_.push_back(hwy::AllocateAligned<std::byte>(buffer_bytes));
    free_.push_back(i);
  }
  thread_ = std::thread([this] { run(); });
}

AsyncSink::~AsyncSink() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void AsyncSink::rethrow_locked() {
  if (error_) std::rethrow_exception(error_);
}

size_t AsyncSink::acquire() {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return !free_.empty() || error_; });
  rethrow_locked();
  const size_t buffer = free_.back();
  free_.pop_back();
  return buffer;
}

void AsyncSink::submit(size_t buffer, size_t size, std::span<TensorFileWriter* const> writers) {
  {
    std::lock_guard lock(mutex_);
    rethrow_locked();
    if (writers.empty()) {
      free_.push_back(buffer);
    }
    for (auto* writer : writers) {
      jobs_.push_back({buffer, size, writer});
      ++pending_[buffer];
    }
  }
  changed_.notify_all();
}

void AsyncSink::drain() {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return (jobs_.empty() && !busy_) || error_; });
  rethrow_locked();
}

void AsyncSink::run() {
  std::unique_lock lock(mutex_);
  while (true) {
    changed_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stopping, nothing left
    const Job job = jobs_.front();
    jobs_.pop_front();
    busy_ = true;
    const bool failed_before = error_ != nullptr;
    lock.unlock();
    std::exception_ptr error;
    const auto start = std::chrono::steady_clock::now();
    if (!failed_before) {
      try {
        job.writer->append(std::span(buffers_[job.buffer].get(), job.size));
      } catch (...) {
        error = std::current_exception();
      }
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    lock.lock();
    busy_ = false;
    write_seconds_ += seconds;
    bytes_written_ += error ? 0 : job.size;
    if (error && !error_) error_ = error;
    if (--pending_[job.buffer] == 0) free_.push_back(job.buffer);
    changed_.notify_all();
  }
}

}  // namespace rvec
