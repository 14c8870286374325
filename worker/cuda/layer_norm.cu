// LayerNorm over the last dim: one block per row, mean then variance of (x - mean) in fp32; the twin
// of CpuBackend::layer_norm (which accumulates in double). Safe in place (out == x).
#include "worker/cuda/elem.cuh"

namespace kvmesh {
namespace {

constexpr int kThreads = 256;

__global__ void layer_norm_kernel(const float* x, const float* w, const float* b, float eps,
                                  int64_t e, float* out) {
  __shared__ float scratch[32];
  const float* row = x + blockIdx.x * e;
  float* o = out + blockIdx.x * e;
  float s = 0.0f;
  for (int64_t i = threadIdx.x; i < e; i += blockDim.x) s += row[i];
  const float mean = block_sum(s, scratch) / static_cast<float>(e);
  float sq = 0.0f;
  for (int64_t i = threadIdx.x; i < e; i += blockDim.x) {
    const float d = row[i] - mean;
    sq += d * d;
  }
  const float var = block_sum(sq, scratch) / static_cast<float>(e);
  const float inv = rsqrtf(var + eps);
  // Every read of the row happened before the second block_sum returned, so writing is safe in place.
  for (int64_t i = threadIdx.x; i < e; i += blockDim.x) o[i] = (row[i] - mean) * inv * w[i] + b[i];
}

}  // namespace

cudaError_t launch_layer_norm(const float* x, const float* w, const float* b, float eps, int64_t n,
                              int64_t e, float* out, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  layer_norm_kernel<<<static_cast<unsigned>(n), kThreads, 0, stream>>>(x, w, b, eps, e, out);
  return cudaGetLastError();
}

}  // namespace kvmesh
