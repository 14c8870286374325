// fp32 -> f16 / bf16 (round to nearest even): activations narrowed for the matrix products.
#include "worker/cuda/elem.cuh"

namespace kvmesh {
namespace {

__global__ void cast_kernel(const float* src, void* dst, KernelDType dtype, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    store_from_float(dst, dtype, i, src[i]);
}

}  // namespace

cudaError_t launch_cast(const float* src, void* dst, KernelDType dtype, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  cast_kernel<<<grid_for(n, 256), 256, 0, stream>>>(src, dst, dtype, n);
  return cudaGetLastError();
}

}  // namespace kvmesh
