// fp32 -> f16 / bf16 (round to nearest even): activations narrowed for the matrix products.
#include "worker/cuda/elem.cuh"
#include "worker/cuda/launch.cuh"

namespace kvmesh {
namespace {

__global__ void cast_kernel(const float* src, void* dst, KernelDType dtype, int64_t n) {
  begin_after_previous_kernel();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    store_from_float(dst, dtype, i, src[i]);
}

}  // namespace

cudaError_t launch_cast(const float* src, void* dst, KernelDType dtype, int64_t n, KernelStream stream) {
  if (n <= 0) return cudaSuccess;
  return launch_kernel(cast_kernel, grid_for(n, 256), 256, stream, src, dst, dtype, n);
}

}  // namespace kvmesh
