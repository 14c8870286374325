// CPU activations: GELU (tanh form, gelu_fast, erf form) and ReLU over a contiguous array. The tanh
// forms run 16 floats at a time with their own exp (compiled for each vector width of cpu_isa.h,
// without fused multiply-add so that every width gives the same bits).
#include "worker/cpu/cpu_activation.h"

#include <cmath>
#include <cstring>

#include "worker/cpu/cpu_isa.h"
#include "worker/cpu/cpu_vector_math.h"

namespace kvmesh {
namespace {

using namespace vector_math;

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

// gelu_array for each vector width of cpu_isa.h.
template <bool Fast>
KVMESH_TARGET_AVX512 void gelu_avx512(float* x, int64_t n) { gelu_array<Fast>(x, n); }
template <bool Fast>
KVMESH_TARGET_AVX2 void gelu_avx2(float* x, int64_t n) { gelu_array<Fast>(x, n); }
template <bool Fast>
void gelu_plain(float* x, int64_t n) { gelu_array<Fast>(x, n); }

template <bool Fast>
void gelu(float* x, int64_t n) {
  for_cpu_isa(&gelu_avx512<Fast>, &gelu_avx2<Fast>, &gelu_plain<Fast>)(x, n);
}

}  // namespace

void cpu_activation(float* x, int64_t n, Activation act) {
  switch (act) {
    case Activation::gelu_new:
      return gelu<false>(x, n);
    case Activation::gelu_fast:
      return gelu<true>(x, n);
    case Activation::gelu:
      for (int64_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * 0.7071067811865476f));
      return;
    case Activation::relu:
      for (int64_t i = 0; i < n; ++i) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
      return;
  }
}

}  // namespace kvmesh
