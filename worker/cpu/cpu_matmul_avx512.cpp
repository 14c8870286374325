// AVX-512F kernels of cpu_matmul: V is one zmm; 12-row x 32-column nn tiles, 6 x 4 nt tiles.
// Compiled for avx512f by the target pragma; cpu_matmul.cpp calls them only where supported.
#include <immintrin.h>

#include <cstdint>

#include "worker/cpu/cpu_matmul_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx512f")

namespace kvmesh::matmul_detail::avx512 {
namespace {

struct V {
  __m512 v;
};

inline __mmask16 mask_n(int n) { return static_cast<__mmask16>((1u << n) - 1u); }
inline V zero() { return {_mm512_setzero_ps()}; }
inline V load(const float* p) { return {_mm512_loadu_ps(p)}; }
inline V load_n(const float* p, int n) { return {_mm512_maskz_loadu_ps(mask_n(n), p)}; }
inline void store(float* p, V a) { _mm512_storeu_ps(p, a.v); }
inline void store_n(float* p, V a, int n) { _mm512_mask_storeu_ps(p, mask_n(n), a.v); }
// 16 bf16 values widened to fp32: the bits move to the upper half of each 32-bit lane.
// The zero-masking forms with a full mask: the plain intrinsics start from _mm512_undefined_epi32,
// which GCC 12 reports as -Wmaybe-uninitialized wherever they inline.
inline V load_bf16(const uint16_t* p) {
  constexpr __mmask16 kAll = 0xFFFF;
  const __m256i half = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m512i wide = _mm512_maskz_cvtepu16_epi32(kAll, half);
  return {_mm512_castsi512_ps(_mm512_maskz_slli_epi32(kAll, wide, 16))};
}
inline V bcast(float s) { return {_mm512_set1_ps(s)}; }
inline V fmadd(V a, V b, V c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }

// Fixed tree: lane i + lane i+8, then +4, +2, +1 (the same tree as the avx2 and scalar files).
inline float hsum(V a) {
  const __m256 lo = __builtin_shufflevector(a.v, a.v, 0, 1, 2, 3, 4, 5, 6, 7);
  const __m256 hi = __builtin_shufflevector(a.v, a.v, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m256 s8 = _mm256_add_ps(lo, hi);
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

constexpr int kNnRows = 12;  // nn tile: 12 rows x 2 vectors = 24 zmm accumulators
constexpr int kNnVecs = 2;
constexpr int64_t kPackCols = 256;  // packed w block: 256 columns x 256 k = 256 KiB (L2)
constexpr int64_t kPackDepth = 256;
constexpr int64_t kSlabMaxRows = 32;  // up to this many rows, w is packed in row slabs
constexpr int64_t kSlabMaxCols = 4096;
constexpr int kStreamRows = 8;           // up to this many rows stream w instead of tiling
constexpr int kStreamDepth = 4;          // k values applied per pass over y
constexpr int64_t kStreamFloats = 4096;  // y floats kept in L1 while w streams past
constexpr int kNtRows = 6;               // nt tile: 6 rows x 4 vocab rows = 24 accumulators
constexpr int kNtVecs = 4;
constexpr int kNtVecsOneRow = 8;  // one row: 8 vocab rows at once

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

}  // namespace kvmesh::matmul_detail::avx512

#pragma GCC pop_options

namespace kvmesh::matmul_detail {

MatmulKernels avx512_kernels() { return {&avx512::nn_entry, &avx512::nt_entry, &avx512::nn_entry_bf16, &avx512::nt_entry_bf16}; }

}  // namespace kvmesh::matmul_detail
