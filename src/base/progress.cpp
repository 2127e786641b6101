#include "base/progress.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

#include "base/text.hpp"

namespace rvec {

ProgressBar::ProgressBar(std::string label, uint64_t total, bool enabled, Units units)
    : label_(std::move(label)),
      total_(total),
      enabled_(enabled && ::isatty(STDERR_FILENO) == 1),
      units_(units),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

ProgressBar::~ProgressBar() {
  if (enabled_ && !finished_) std::fputs("\n", stderr);
}

void ProgressBar::update(uint64_t done) {
  done_ = done;
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  draw(false);
}

void ProgressBar::finish() {
  if (!enabled_ || finished_) return;
  done_ = total_;
  draw(true);
  finished_ = true;
}

void ProgressBar::draw(bool final) {
  constexpr int kWidth = 24;
  const double fraction = total_ == 0 ? 1.0 : static_cast<double>(done_) / static_cast<double>(total_);
  const int filled = static_cast<int>(fraction * kWidth);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = seconds > 0 ? static_cast<double>(done_) / seconds : 0;
  std::string eta = "";
  if (!final && rate > 0) eta = fmt::format("  ETA {:.0f}s", static_cast<double>(total_ - done_) / rate);
  const bool bytes = units_ == Units::kBytes;
  const auto amount = [&](uint64_t n) { return bytes ? human_bytes(n) : std::to_string(n); };
  const std::string speed = bytes ? human_bytes(static_cast<uint64_t>(rate)) : fmt::format("{:.2f}", rate);
  fmt::print(stderr, "\r{} [{}{}] {} / {}  {}/s{}{}{}\x1b[K{}", label_, std::string(filled, '#'),
             std::string(kWidth - filled, '.'), amount(done_), amount(total_), speed, eta, note_.empty() ? "" : "  ",
             note_, final ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace rvec
