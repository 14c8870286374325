// Row gather: out[i] = x[rows[i]] (the rows that need logits); the twin of CpuBackend::gather_rows.
#include "worker/cuda/elem.cuh"

namespace kvmesh {
namespace {

__global__ void gather_rows_kernel(const float* x, const int32_t* rows, int64_t e, float* out) {
  const int64_t i = blockIdx.x;
  const float* src = x + static_cast<int64_t>(rows[i]) * e;
  for (int64_t c = threadIdx.x; c < e; c += blockDim.x) out[i * e + c] = src[c];
}

}  // namespace

cudaError_t launch_gather_rows(const float* x, const int32_t* rows, int64_t r, int64_t e, float* out,
                               cudaStream_t stream) {
  if (r <= 0) return cudaSuccess;
  gather_rows_kernel<<<static_cast<unsigned>(r), 256, 0, stream>>>(x, rows, e, out);
  return cudaGetLastError();
}

}  // namespace kvmesh
