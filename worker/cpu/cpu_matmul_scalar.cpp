// Portable kernels of cpu_matmul for CPUs without AVX2+FMA: V is 16 floats, products are rounded
// before the add (no FMA; contraction is switched off so every build rounds the same way).
#include <cstdint>
#include <cstring>

#include "worker/cpu/cpu_matmul_kernels.h"

#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")

namespace kvmesh::matmul_detail::scalar {
namespace {

constexpr int kVecLanes = 16;

struct V {
  float v[kVecLanes];
};

inline V zero() { return V{}; }
inline V load_n(const float* p, int n) {
  V r{};
  for (int l = 0; l < n; ++l) r.v[l] = p[l];
  return r;
}
inline V load(const float* p) { return load_n(p, kVecLanes); }
// 16 bf16 values widened to fp32: the bits move to the upper half of each 32-bit word.
inline V load_bf16(const uint16_t* p) {
  V r;
  for (int l = 0; l < kVecLanes; ++l) {
    const uint32_t bits = static_cast<uint32_t>(p[l]) << 16;
    std::memcpy(&r.v[l], &bits, sizeof(float));
  }
  return r;
}
inline void store_n(float* p, const V& a, int n) {
  for (int l = 0; l < n; ++l) p[l] = a.v[l];
}
inline void store(float* p, const V& a) { store_n(p, a, kVecLanes); }
inline V bcast(float s) {
  V r;
  for (float& x : r.v) x = s;
  return r;
}
inline V fmadd(const V& a, const V& b, const V& c) {
  V r;
  for (int l = 0; l < kVecLanes; ++l) r.v[l] = a.v[l] * b.v[l] + c.v[l];
  return r;
}

// Fixed tree: lane i + lane i+8, then +4, +2, +1 (the same tree as the avx512 and avx2 files).
inline float hsum(const V& a) {
  float s[8];
  for (int l = 0; l < 8; ++l) s[l] = a.v[l] + a.v[l + 8];
  for (int l = 0; l < 4; ++l) s[l] = s[l] + s[l + 4];
  for (int l = 0; l < 2; ++l) s[l] = s[l] + s[l + 2];
  return s[0] + s[1];
}

constexpr int kNnRows = 4;
constexpr int kNnVecs = 1;
constexpr int64_t kPackCols = 256;
constexpr int64_t kPackDepth = 256;
constexpr int64_t kSlabMaxRows = 32;  // up to this many rows, w is packed in row slabs
constexpr int64_t kSlabMaxCols = 4096;
constexpr int kStreamRows = 8;
constexpr int kStreamDepth = 4;
constexpr int64_t kStreamFloats = 4096;  // y floats kept in L1 while w streams past
constexpr int kNtRows = 2;
constexpr int kNtVecs = 2;
constexpr int kNtVecsOneRow = 4;

#include "worker/cpu/cpu_matmul_tiles.inl"

}  // namespace

void nn_entry(const NnArgs& a, int64_t c0, int64_t c1, float* scratch) {
  nn_range(a, c0, c1, scratch);
}
void nt_entry(const NtArgs& a, int64_t v0, int64_t v1) { nt_range(a, v0, v1); }
void nn_entry_bf16(const NnArgsBf16& a, int64_t c0, int64_t c1, float* scratch) {
  nn_range(a, c0, c1, scratch);
}
void nt_entry_bf16(const NtArgsBf16& a, int64_t v0, int64_t v1) { nt_range(a, v0, v1); }

}  // namespace kvmesh::matmul_detail::scalar

#pragma GCC pop_options

namespace kvmesh::matmul_detail {

MatmulKernels scalar_kernels() { return {&scalar::nn_entry, &scalar::nt_entry, &scalar::nn_entry_bf16, &scalar::nt_entry_bf16}; }

}  // namespace kvmesh::matmul_detail
