#include "hf/read_ahead.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <tuple>
#include <vector>

namespace rvec {
namespace {

// Tensors that exist only as names, dtypes and sizes: the asks are recorded,
// no file is touched.
struct FakeTensors {
  explicit FakeTensors(std::vector<std::pair<DType, uint64_t>> specs) {
    infos.reserve(specs.size());
    for (const auto& [dtype, elements] : specs) {
      infos.push_back(TensorInfo{.name = "t" + std::to_string(infos.size()), .dtype = dtype, .shape = {elements}});
    }
    for (const TensorInfo& info : infos) tensors.push_back(ModelTensor{nullptr, &info});
  }
  std::vector<TensorInfo> infos;
  std::vector<ModelTensor> tensors;
};

using Ask = std::tuple<std::string, uint64_t, uint64_t>;  // tensor, byte offset, bytes

// Records every ask and the byte position asked up to, and lets the test wait
// until a number of asks arrived.
class AskLog {
 public:
  ReadAhead::Ask recorder() {
    return [this](const ModelTensor& t, uint64_t offset, uint64_t bytes) {
      const std::lock_guard lock(mutex_);
      asks_.emplace_back(t.name(), offset, bytes);
      changed_.notify_all();
    };
  }
  std::vector<Ask> wait_for(size_t count) {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return asks_.size() >= count; });
    return asks_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<Ask> asks_;
};

constexpr uint64_t kChunk = ReadAhead::kChunkElements;

TEST(ReadAhead, AsksForEveryStretchInOrderChunkByChunkInTurn) {
  FakeTensors fake({{DType::kBF16, 2 * kChunk + 5}, {DType::kF32, 2 * kChunk + 5}, {DType::kBF16, 3 * kChunk}});
  AskLog log;
  std::vector<ReadStretch> path{{{&fake.tensors[0], &fake.tensors[1]}, 0, 2 * kChunk + 5},
                                {{&fake.tensors[2]}, kChunk, 2 * kChunk}};
  const ReadAhead ahead(path, /*window_bytes=*/1ull << 40, log.recorder());
  const std::vector<Ask> want{
      {"t0", 0, 2 * kChunk},         {"t1", 0, 4 * kChunk},
      {"t0", 2 * kChunk, 2 * kChunk}, {"t1", 4 * kChunk, 4 * kChunk},
      {"t0", 4 * kChunk, 10},         {"t1", 8 * kChunk, 20},
      {"t2", 2 * kChunk, 2 * kChunk}, {"t2", 4 * kChunk, 2 * kChunk},
  };
  EXPECT_EQ(log.wait_for(want.size()), want);
}

TEST(ReadAhead, StaysWithinTheWindowOfTheReportedPosition) {
  FakeTensors fake({{DType::kBF16, 8 * kChunk}, {DType::kBF16, 8 * kChunk}});
  const uint64_t window = 6 * kChunk;  // bytes: a step (one chunk of each tensor) is 4 * kChunk
  std::atomic<uint64_t> reported{0};
  std::atomic<uint64_t> asked{0};
  std::atomic<bool> beyond{false};
  AskLog log;
  ReadAhead::Ask record = log.recorder();
  ReadAhead ahead({{{&fake.tensors[0], &fake.tensors[1]}, 0, 8 * kChunk}}, window,
                  [&](const ModelTensor& t, uint64_t offset, uint64_t bytes) {
                    if ((asked += bytes) > reported + window) beyond = true;
                    record(t, offset, bytes);
                  });
  EXPECT_EQ(log.wait_for(2).size(), 2u);  // the first chunk of each: 2 chunks' bytes <= the window
  for (uint64_t done = kChunk; done <= 8 * kChunk; done += kChunk) {
    reported = 4 * done;
    ahead.reached(0, done);
    log.wait_for(std::min<uint64_t>(16, 2 * (done / kChunk + 1)));
  }
  EXPECT_FALSE(beyond);
  EXPECT_EQ(log.wait_for(16).size(), 16u);
}

TEST(ReadAhead, AsksNothingBeyondTheWindowUntilTheReaderMoves) {
  FakeTensors fake({{DType::kF32, 4 * kChunk}});
  AskLog log;
  std::atomic<int> asks{0};
  ReadAhead::Ask record = log.recorder();
  {
    ReadAhead ahead({{{&fake.tensors[0]}, 0, 4 * kChunk}}, 4 * kChunk,  // one f32 chunk of room
                    [&](const ModelTensor& t, uint64_t offset, uint64_t bytes) {
                      ++asks;
                      record(t, offset, bytes);
                    });
    log.wait_for(1);
    ahead.reached(0, kChunk / 2);
    ahead.reached(0, 0);  // going back changes nothing
  }  // the destructor stops the waiting thread
  EXPECT_EQ(asks, 1);
}

TEST(ReadAhead, EmptyPathAndEmptyStretchesAskNothing) {
  FakeTensors fake({{DType::kBF16, 10}});
  std::atomic<int> asks{0};
  {
    const ReadAhead none({}, 1 << 20, [&](const ModelTensor&, uint64_t, uint64_t) { ++asks; });
    const ReadAhead empty({{{&fake.tensors[0]}, 3, 0}, {{}, 0, 10}}, 1 << 20,
                          [&](const ModelTensor&, uint64_t, uint64_t) { ++asks; });
  }
  EXPECT_EQ(asks, 0);
}

}  // namespace
}  // namespace rvec
