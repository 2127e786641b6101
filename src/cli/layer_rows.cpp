#include "cli/layer_rows.hpp"

#include <fmt/format.h>

namespace rvec::cli {

void print_layer_rows(const std::string& label, const std::map<int64_t, std::string>& cells) {
  constexpr size_t kPerLine = 8;
  std::string line;
  int64_t first = 0, last = 0;
  size_t count = 0;
  const auto flush = [&] {
    if (count == 0) return;
    fmt::print("layers  {} {:>5}:{}\n", label, fmt::format("{}-{}", first, last), line);
    line.clear();
    count = 0;
  };
  for (const auto& [layer, cell] : cells) {
    if (count == 0) first = layer;
    last = layer;
    line += " " + cell;
    if (++count == kPerLine) flush();
  }
  flush();
}

}  // namespace rvec::cli
