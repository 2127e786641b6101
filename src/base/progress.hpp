// A progress bar for long work, drawn on stderr only when it is a
// terminal (and not silenced), redrawn at most ten times a second:
//   merging  [#########.........]  4.2 GB / 9.6 GB  1.1 GB/s  ETA 5s
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace rvec {

class ProgressBar {
 public:
  enum class Units { kBytes, kItems };  // "4.2 GB / 9.6 GB  1.1 GB/s" or "120 / 480  3.2/s"
  ProgressBar(std::string label, uint64_t total, bool enabled = true, Units units = Units::kBytes);
  ~ProgressBar();
  void update(uint64_t done);
  // Text shown after the rate (e.g. "acc 0.42"); drawn on the next update.
  void set_note(std::string note) { note_ = std::move(note); }
  void finish();

 private:
  void draw(bool final);

  std::string label_;
  uint64_t total_;
  uint64_t done_ = 0;
  bool enabled_;
  Units units_;
  std::string note_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace rvec
