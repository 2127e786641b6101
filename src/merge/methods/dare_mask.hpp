// DARE's keep decision (arXiv 2311.03099): element j of vector i in tensor
// `name` is kept with probability `density`, decided by a pure function of
// (seed, name, i, j), so the result does not depend on threads, block sizes,
// resuming or the machine. In full (all arithmetic modulo 2^64):
//
//   mix(x)  = SplitMix64's finaliser:  x ^= x >> 30; x *= 0xBF58476D1CE4E5B9;
//                                      x ^= x >> 27; x *= 0x94D049BB133111EB; x ^= x >> 31
//   h       = FNV-1a 64 of the name's UTF-8 bytes (offset 0xCBF29CE484222325, prime 0x100000001B3)
//   key     = mix(mix(mix(seed) ^ h) + i)          i: the vector's index in the merge, from 0
//   u_j     = mix(key + (j + 1) * 0x9E3779B97F4A7C15)   (the j-th output of SplitMix64 from state `key`)
//   keep    = (u_j >> 11) < density * 2^53          (as real numbers)
//
// u_j >> 11 for a tile of elements is kernels::splitmix_draws(key, j0, ...).
// docs/merging.md states the same; the tests re-implement it from there.
// Pure functions: thread-safe.
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>

#include "base/hash.hpp"

namespace rvec::dare {

// The key of vector `vector` in tensor `name`.
inline uint64_t stream_key(uint64_t seed, std::string_view name, uint64_t vector) {
  return mix64(mix64(mix64(seed) ^ fnv1a64(name)) + vector);
}

// Elements are kept while (u >> 11) is below this: ceil(density * 2^53).
inline uint64_t keep_limit(double density) {
  return static_cast<uint64_t>(std::ceil(density * 9007199254740992.0));
}

}  // namespace rvec::dare
