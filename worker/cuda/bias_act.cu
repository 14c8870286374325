// Bias + activation (GELU tanh form "gelu_new", erf GELU, gelu_fast, ReLU) in one pass, in place
// or into the bf16/f16 operand of the next matrix product; the twin of CpuBackend's linear bias and
// activation.
#include "worker/cuda/elem.cuh"

namespace kvmesh {
namespace {

__device__ __forceinline__ float activate(int act, float x) {
  switch (act) {
    case 0: {  // gelu_new
      constexpr float k = 0.7978845608028654f;  // sqrt(2 / pi)
      return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
    }
    case 1: return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
    case 2: return 0.5f * x * (1.0f + tanhf(x * 0.7978845608f * (1.0f + 0.044715f * x * x)));
    case 3: return x > 0.0f ? x : 0.0f;
    default: return x;
  }
}

__global__ void bias_act_kernel(const float* x, const float* bias, int act, int64_t total, int64_t e,
                                void* out, KernelDType out_dtype) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float v = x[i];
    if (bias != nullptr) v += bias[i % e];
    store_from_float(out, out_dtype, i, activate(act, v));
  }
}

}  // namespace

cudaError_t launch_bias_act(float* x, const float* bias, int act, int64_t n, int64_t e,
                            cudaStream_t stream) {
  const int64_t total = n * e;
  if (total <= 0) return cudaSuccess;
  bias_act_kernel<<<grid_for(total, 256), 256, 0, stream>>>(x, bias, act, total, e, x, KernelDType::f32);
  return cudaGetLastError();
}

cudaError_t launch_bias_act_into(const float* x, const float* bias, int act, int64_t n, int64_t e, void* out,
                                 KernelDType out_dtype, cudaStream_t stream) {
  const int64_t total = n * e;
  if (total <= 0) return cudaSuccess;
  if (out_dtype != KernelDType::f32 && out == static_cast<const void*>(x)) return cudaErrorInvalidValue;
  bias_act_kernel<<<grid_for(total, 256), 256, 0, stream>>>(x, bias, act, total, e, out, out_dtype);
  return cudaGetLastError();
}

}  // namespace kvmesh
