// Bias + activation (GELU tanh form "gelu_new", erf GELU, gelu_fast, ReLU) in one pass, in place
// or into the bf16/f16 operand of the next matrix product; the twin of CpuBackend's linear bias and
// activation.
#include "worker/cuda/elem.cuh"
#include "worker/cuda/launch.cuh"

namespace kvmesh {
namespace {

__global__ void bias_act_kernel(const float* x, const float* bias, int act, int64_t total, int64_t e,
                                void* out, KernelDType out_dtype) {
  begin_after_previous_kernel();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float v = x[i];
    if (bias != nullptr) v += bias[i % e];
    store_from_float(out, out_dtype, i, activate(act, v));
  }
}

}  // namespace

cudaError_t launch_bias_act(float* x, const float* bias, int act, int64_t n, int64_t e,
                            KernelStream stream) {
  const int64_t total = n * e;
  if (total <= 0) return cudaSuccess;
  return launch_kernel(bias_act_kernel, grid_for(total, 256), 256, stream, x, bias, act, total, e, x, KernelDType::f32);
}

cudaError_t launch_bias_act_into(const float* x, const float* bias, int act, int64_t n, int64_t e, void* out,
                                 KernelDType out_dtype, KernelStream stream) {
  const int64_t total = n * e;
  if (total <= 0) return cudaSuccess;
  if (out_dtype != KernelDType::f32 && out == static_cast<const void*>(x)) return cudaErrorInvalidValue;
  return launch_kernel(bias_act_kernel, grid_for(total, 256), 256, stream, x, bias, act, total, e, out, out_dtype);
}

}  // namespace kvmesh
