// Small non-cryptographic hashes shared across kvmesh: the splitmix64 finaliser (seeds and
// counter-based random draws), 64-bit FNV-1a (page hashes, names) and XXH64 (disk checksums and
// model fingerprints).
#pragma once

#include <cstddef>
#include <cstdint>

namespace kvmesh {

// splitmix64: a well-mixed 64-bit value from any 64-bit input. constexpr, so CUDA device code
// (built with --expt-relaxed-constexpr) calls this very function.
constexpr uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

constexpr uint64_t kFnvOffset = 1469598103934665603ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

// FNV-1a over bytes, continuing from `h`.
inline uint64_t fnv1a64(const void* data, size_t n, uint64_t h = kFnvOffset) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * kFnvPrime;
  return h;
}

// 64-bit hash of bytes by the XXH64 algorithm (fast over large buffers): disk-page checksums and
// model fingerprints.
uint64_t hash64(const void* data, size_t n, uint64_t seed = 0);

}  // namespace kvmesh
