// Row gather: out[i] = x[rows[i]] (the rows that need logits), blocks of kThreads elements of a row,
// one element per thread; the twin of CpuBackend::gather_rows.
#include "worker/cuda/elem.cuh"
#include "worker/cuda/launch.cuh"

namespace kvmesh {
namespace {

constexpr int kThreads = 256;

__global__ void gather_rows_kernel(const float* x, const int32_t* rows, int64_t e, float* out) {
  begin_after_previous_kernel();
  const int64_t i = blockIdx.x;
  const int64_t c = static_cast<int64_t>(blockIdx.y) * kThreads + threadIdx.x;
  if (c < e) out[i * e + c] = x[static_cast<int64_t>(rows[i]) * e + c];
}

}  // namespace

cudaError_t launch_gather_rows(const float* x, const int32_t* rows, int64_t r, int64_t e, float* out,
                               KernelStream stream) {
  if (r <= 0 || e <= 0) return cudaSuccess;
  const int64_t parts = (e + kThreads - 1) / kThreads;
  if (parts > 65535 || r > 0x7fffffff) return cudaErrorInvalidValue;
  return launch_kernel(gather_rows_kernel, dim3(static_cast<unsigned>(r), static_cast<unsigned>(parts)), kThreads,
                       stream, x, rows, e, out);
}

}  // namespace kvmesh
