// Per-layer numbers for a terminal: eight layers to a line, each line
// labelled with its layer range, so 64 layers fit an 80-column screen.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace rvec::cli {

// `cells`: layer -> formatted value (same width for all).
void print_layer_rows(const std::string& label, const std::map<int64_t, std::string>& cells);

}  // namespace rvec::cli
