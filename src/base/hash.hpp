// FNV-1a 64-bit: identifies headers and configs in provenance and resume
// fingerprints (not a cryptographic hash).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace rvec {

inline uint64_t fnv1a64(std::string_view data, uint64_t hash = 0xCBF29CE484222325ull) {
  for (unsigned char c : data) hash = (hash ^ c) * 0x100000001B3ull;
  return hash;
}

std::string hex64(uint64_t value);

}  // namespace rvec
