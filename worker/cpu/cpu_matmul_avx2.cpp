// AVX2+FMA kernels of cpu_matmul: V is two ymm (lanes 0-7, 8-15), so every element follows the same
// FMA chain and sum tree as the AVX-512 path and the results are bit-identical to it.
#include <immintrin.h>

#include <cstdint>

#include "worker/cpu/cpu_matmul_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace kvmesh::matmul_detail::avx2 {
namespace {

struct V {
  __m256 lo, hi;
};

inline __m256i lane_mask(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline V zero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
inline V load(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
inline V load_n(const float* p, int n) {
  return {_mm256_maskload_ps(p, lane_mask(n)), _mm256_maskload_ps(p + 8, lane_mask(n - 8))};
}
inline void store(float* p, V a) {
  _mm256_storeu_ps(p, a.lo);
  _mm256_storeu_ps(p + 8, a.hi);
}
inline void store_n(float* p, V a, int n) {
  _mm256_maskstore_ps(p, lane_mask(n), a.lo);
  _mm256_maskstore_ps(p + 8, lane_mask(n - 8), a.hi);
}
// 16 bf16 values widened to fp32: the bits move to the upper half of each 32-bit lane.
inline __m256 widen_bf16x8(const uint16_t* p) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}
inline V load_bf16(const uint16_t* p) { return {widen_bf16x8(p), widen_bf16x8(p + 8)}; }
inline V bcast(float s) {
  const __m256 b = _mm256_set1_ps(s);
  return {b, b};
}
inline V fmadd(V a, V b, V c) {
  return {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)};
}

// Fixed tree: lane i + lane i+8, then +4, +2, +1 (the same tree as the avx512 and scalar files).
inline float hsum(V a) {
  const __m256 s8 = _mm256_add_ps(a.lo, a.hi);
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

constexpr int kNnRows = 6;  // nn tile: 6 rows x 1 vector = 12 ymm accumulators
constexpr int kNnVecs = 1;
constexpr int64_t kPackCols = 256;
constexpr int64_t kPackDepth = 256;
constexpr int64_t kSlabMaxRows = 32;  // up to this many rows, w is packed in row slabs
constexpr int64_t kSlabMaxCols = 4096;
constexpr int kStreamRows = 8;
constexpr int kStreamDepth = 4;
constexpr int64_t kStreamFloats = 4096;  // y floats kept in L1 while w streams past
constexpr int kNtRows = 2;               // nt tile: 2 rows x 2 vocab rows = 8 ymm accumulators
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

}  // namespace kvmesh::matmul_detail::avx2

#pragma GCC pop_options

namespace kvmesh::matmul_detail {

MatmulKernels avx2_kernels() { return {&avx2::nn_entry, &avx2::nt_entry, &avx2::nn_entry_bf16, &avx2::nt_entry_bf16}; }

}  // namespace kvmesh::matmul_detail
