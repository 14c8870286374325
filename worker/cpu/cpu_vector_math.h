// 16-float vector values for the CPU kernels that are compiled once per vector width of cpu_isa.h
// (attention, activations): the type, loads and stores, a fixed-order sum, a 16 x 16 transpose
// and e^x. Every function here is inlined into the per-width variant that calls it.
//
// Float16 is GCC's vector extension: whatever registers the variant has (one zmm, two ymm or four
// xmm), element by element with no reordering. Files that include this are built without fused
// multiply-add (worker/CMakeLists.txt), so every width gives the same bits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>

namespace kvmesh::vector_math {

typedef float Float16 __attribute__((vector_size(64)));
typedef int32_t Int16 __attribute__((vector_size(64)));

[[gnu::always_inline]] inline Float16 load16(const float* p) {
  Float16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
[[gnu::always_inline]] inline void store16(float* p, Float16 v) { std::memcpy(p, &v, sizeof v); }

// A vector with every lane set to x.
[[gnu::always_inline]] inline Float16 splat16(float x) { return Float16{} + x; }

// The lanes' sum as a fixed tree: halves added pairwise (16 -> 8 -> 4 -> 2 -> 1).
[[gnu::always_inline]] inline float sum16(Float16 v) {
  float lanes[16];
  store16(lanes, v);
  for (int width = 8; width >= 1; width /= 2)
    for (int i = 0; i < width; ++i) lanes[i] += lanes[i + width];
  return lanes[0];
}

namespace detail {
// The two halves of one round of a 16 x 16 transpose: rows a (= i) and b (= i + H) exchange their
// off-diagonal H x H blocks.
template <int H, size_t... L>
[[gnu::always_inline]] inline Float16 upper_from(Float16 a, Float16 b, std::index_sequence<L...>) {
  return __builtin_shufflevector(a, b, ((L & H) == 0 ? int(L) : int(16 + L - H))...);
}
template <int H, size_t... L>
[[gnu::always_inline]] inline Float16 lower_from(Float16 a, Float16 b, std::index_sequence<L...>) {
  return __builtin_shufflevector(a, b, ((L & H) == 0 ? int(L + H) : int(16 + L))...);
}
template <int H>
[[gnu::always_inline]] inline void transpose_round(Float16 (&m)[16]) {
  for (int i = 0; i < 16; ++i) {
    if (i & H) continue;
    const Float16 a = m[i], b = m[i + H];
    m[i] = upper_from<H>(a, b, std::make_index_sequence<16>());
    m[i + H] = lower_from<H>(a, b, std::make_index_sequence<16>());
  }
}
}  // namespace detail

// m = m transposed (16 rows of 16 lanes), by four rounds of block exchanges (8, 4, 2, 1).
[[gnu::always_inline]] inline void transpose16(Float16 (&m)[16]) {
  detail::transpose_round<8>(m);
  detail::transpose_round<4>(m);
  detail::transpose_round<2>(m);
  detail::transpose_round<1>(m);
}

// e^x within about 2 float ulps for x in [-87, 88] (Cody-Waite reduction by ln 2 and a degree-5
// polynomial on [-ln2 / 2, ln2 / 2]); x is clamped to that range, so large negative x gives about
// 1e-38 rather than 0 and large positive x a finite 2e38 rather than inf.
[[gnu::always_inline]] inline Float16 exp16(Float16 x) {
  const Float16 hi = splat16(88.3762626647949f), lo = splat16(-87.3365447504f);
  x = x < hi ? x : hi;
  x = x > lo ? x : lo;
  // n = round(x / ln 2), by the 1.5 * 2^23 trick (|x / ln 2| < 2^22).
  const Float16 shifted = x * 1.44269504088896341f + 12582912.0f;
  const Float16 n = shifted - 12582912.0f;
  const Float16 r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  Float16 p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const Float16 er = p * (r * r) + r + 1.0f;
  const Int16 bits = (__builtin_convertvector(n, Int16) + 127) << 23;  // 2^n, n in [-126, 127]
  Float16 scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return er * scale;
}

}  // namespace kvmesh::vector_math
