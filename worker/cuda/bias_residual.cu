// Bias + residual: x += (y + bias[col]) in one pass; the twin of CpuBackend's add_bias then add.
#include "worker/cuda/elem.cuh"
#include "worker/cuda/launch.cuh"

namespace kvmesh {
namespace {

__global__ void bias_residual_kernel(float* x, const float* y, const float* bias, int64_t total,
                                     int64_t e) {
  begin_after_previous_kernel();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float yb = bias != nullptr ? y[i] + bias[i % e] : y[i];
    x[i] += yb;
  }
}

}  // namespace

cudaError_t launch_bias_residual(float* x, const float* y, const float* bias, int64_t n, int64_t e,
                                 KernelStream stream) {
  const int64_t total = n * e;
  if (total <= 0) return cudaSuccess;
  return launch_kernel(bias_residual_kernel, grid_for(total, 256), 256, stream, x, y, bias, total, e);
}

}  // namespace kvmesh
