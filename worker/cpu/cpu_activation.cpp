// CPU activations: GELU (tanh form, gelu_fast, erf form) and ReLU over a contiguous array. The tanh
// forms run 16 floats at a time with their own exp (compiled for each x86-64 vector width, picked
// at load time, without fused multiply-add so that every width gives the same bits).
#include "worker/cpu/cpu_activation.h"

#include <cmath>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define KVMESH_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define KVMESH_VECTOR_CLONES
#endif

namespace kvmesh {
namespace {

// 16 floats (or ints) as one value: GCC's vector extension, element by element.
typedef float Float16 __attribute__((vector_size(64)));
typedef int32_t Int16 __attribute__((vector_size(64)));

[[gnu::always_inline]] inline Float16 load16(const float* p) {
  Float16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
[[gnu::always_inline]] inline void store16(float* p, Float16 v) { std::memcpy(p, &v, sizeof v); }

// e^x within about 2 float ulps for x in [-87, 88] (Cody-Waite reduction by ln 2 and a degree-5
// polynomial on [-ln2 / 2, ln2 / 2]); x is clamped to that range, so large negative x gives about
// 1e-38 rather than 0 and large positive x a finite 2e38 rather than inf.
[[gnu::always_inline]] inline Float16 exp16(Float16 x) {
  const Float16 zero = {};
  const Float16 hi = zero + 88.3762626647949f, lo = zero - 87.3365447504f;
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

// GELU as x * sigmoid(2y) = x / (1 + e^(-2y)): y = sqrt(2/pi) (x + 0.044715 x^3) (gelu_new) or
// x * 0.7978845608 (1 + 0.044715 x^2) (gelu_fast).
template <bool Fast>
[[gnu::always_inline]] inline Float16 gelu16(Float16 x) {
  const Float16 y = Fast ? x * 0.7978845608f * (1.0f + 0.044715f * x * x)
                         : 0.7978845608028654f * (x + 0.044715f * x * x * x);
  return x / (1.0f + exp16(-2.0f * y));
}

// Every element as the vector lanes take it, so an element's result does not depend on where it
// sits in the array.
template <bool Fast>
[[gnu::always_inline]] inline void gelu_array(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) store16(x + i, gelu16<Fast>(load16(x + i)));
  if (i < n) {
    float tail[16] = {};
    std::memcpy(tail, x + i, static_cast<size_t>(n - i) * sizeof(float));
    store16(tail, gelu16<Fast>(load16(tail)));
    std::memcpy(x + i, tail, static_cast<size_t>(n - i) * sizeof(float));
  }
}

KVMESH_VECTOR_CLONES void gelu_new_array(float* x, int64_t n) { gelu_array<false>(x, n); }
KVMESH_VECTOR_CLONES void gelu_fast_array(float* x, int64_t n) { gelu_array<true>(x, n); }

}  // namespace

void cpu_activation(float* x, int64_t n, Activation act) {
  switch (act) {
    case Activation::gelu_new:
      return gelu_new_array(x, n);
    case Activation::gelu_fast:
      return gelu_fast_array(x, n);
    case Activation::gelu:
      for (int64_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * 0.7071067811865476f));
      return;
    case Activation::relu:
      for (int64_t i = 0; i < n; ++i) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
      return;
  }
}

}  // namespace kvmesh
