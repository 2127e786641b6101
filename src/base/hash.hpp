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

// splitmix64's finaliser: spreads every input bit over the whole word.
inline uint64_t mix64(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

std::string hex64(uint64_t value);

}  // namespace rvec
