#include "hf/read_ahead.hpp"

#include <algorithm>

namespace rvec {
namespace {

uint64_t bytes_of(const ModelTensor& tensor, uint64_t elements) { return dtype_bytes(tensor.info->dtype, elements); }

uint64_t stretch_bytes(const ReadStretch& s, uint64_t elements) {
  uint64_t bytes = 0;
  for (const ModelTensor* t : s.tensors) bytes += bytes_of(*t, elements);
  return bytes;
}

}  // namespace

ReadAhead::ReadAhead(std::vector<ReadStretch> stretches, uint64_t window_bytes, Ask ask)
    : stretches_(std::move(stretches)), window_bytes_(window_bytes), ask_(std::move(ask)) {
  if (!ask_) {
    ask_ = [](const ModelTensor& t, uint64_t offset, uint64_t bytes) { t.file->prefetch(*t.info, offset, bytes); };
  }
  uint64_t at = 0;
  for (const ReadStretch& s : stretches_) {
    starts_.push_back(at);
    at += stretch_bytes(s, s.elements);
  }
  starts_.push_back(at);  // the end
  thread_ = std::thread([this] { run(); });
}

ReadAhead::~ReadAhead() {
  {
    const std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  moved_.notify_all();
  thread_.join();
}

uint64_t ReadAhead::position_of(size_t stretch, uint64_t elements) const {
  if (stretch >= stretches_.size()) return starts_.back();
  return starts_[stretch] + stretch_bytes(stretches_[stretch], std::min(elements, stretches_[stretch].elements));
}

void ReadAhead::reached(size_t stretch, uint64_t elements) {
  const uint64_t position = position_of(stretch, elements);
  {
    const std::lock_guard lock(mutex_);
    if (position <= reached_) return;
    reached_ = position;
  }
  moved_.notify_all();
}

// Waits until asking for bytes up to `ahead` keeps within the window; false when stopping.
bool ReadAhead::wait_for_room(uint64_t ahead) {
  std::unique_lock lock(mutex_);
  moved_.wait(lock, [&] { return stopping_ || ahead <= reached_ + window_bytes_; });
  return !stopping_;
}

void ReadAhead::run() {
  for (size_t s = 0; s < stretches_.size(); ++s) {
    const ReadStretch& stretch = stretches_[s];
    for (uint64_t done = 0; done < stretch.elements; done += kChunkElements) {
      const uint64_t n = std::min(kChunkElements, stretch.elements - done);
      if (!wait_for_room(position_of(s, done + n))) return;
      for (const ModelTensor* t : stretch.tensors) ask_(*t, bytes_of(*t, stretch.first + done), bytes_of(*t, n));
    }
  }
}

}  // namespace rvec
