// LayerNorm over the last dim: one block per row, mean then variance of (x - mean) in fp32; the twin
// of CpuBackend::layer_norm (which accumulates in double). The output may be fp32 (safe in place,
// out == x) or the bf16/f16 operand of the next matrix product. A second kernel first adds a
// residual (x += y + bias, as bias_residual) and normalises the sum: the end of one block and the
// start of the next in one pass.
#include "worker/cuda/elem.cuh"

namespace kvmesh {
namespace {

constexpr int kThreads = 256;

// Normalises row (fp32, e values) into out's row. Every read of the row happens before the second
// block_sum returns, so out may be the row itself when it is fp32.
__device__ __forceinline__ void normalise_row(const float* row, const float* w, const float* b, float eps,
                                              int64_t e, float sum, void* out, KernelDType out_dtype,
                                              int64_t out_at, float* scratch) {
  const float mean = block_sum(sum, scratch) / static_cast<float>(e);
  float sq = 0.0f;
  for (int64_t i = threadIdx.x; i < e; i += blockDim.x) {
    const float d = row[i] - mean;
    sq += d * d;
  }
  const float var = block_sum(sq, scratch) / static_cast<float>(e);
  const float inv = rsqrtf(var + eps);
  for (int64_t i = threadIdx.x; i < e; i += blockDim.x)
    store_from_float(out, out_dtype, out_at + i, (row[i] - mean) * inv * w[i] + b[i]);
}

__global__ void layer_norm_kernel(const float* x, const float* w, const float* b, float eps, int64_t e,
                                  void* out, KernelDType out_dtype) {
  __shared__ float scratch[32];
  const float* row = x + blockIdx.x * e;
  float s = 0.0f;
  for (int64_t i = threadIdx.x; i < e; i += blockDim.x) s += row[i];
  normalise_row(row, w, b, eps, e, s, out, out_dtype, blockIdx.x * e, scratch);
}

// x += (y + bias[col]); out = LayerNorm(x). Each thread reads back only the elements it wrote.
__global__ void residual_layer_norm_kernel(float* x, const float* y, const float* bias, const float* w,
                                           const float* b, float eps, int64_t e, void* out,
                                           KernelDType out_dtype) {
  __shared__ float scratch[32];
  float* row = x + blockIdx.x * e;
  const float* y_row = y + blockIdx.x * e;
  float s = 0.0f;
  for (int64_t i = threadIdx.x; i < e; i += blockDim.x) {
    const float yb = bias != nullptr ? y_row[i] + bias[i] : y_row[i];
    row[i] += yb;
    s += row[i];
  }
  normalise_row(row, w, b, eps, e, s, out, out_dtype, blockIdx.x * e, scratch);
}

}  // namespace

cudaError_t launch_layer_norm(const float* x, const float* w, const float* b, float eps, int64_t n,
                              int64_t e, void* out, KernelDType out_dtype, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  if (out_dtype != KernelDType::f32 && static_cast<const void*>(x) == out) return cudaErrorInvalidValue;
  layer_norm_kernel<<<static_cast<unsigned>(n), kThreads, 0, stream>>>(x, w, b, eps, e, out, out_dtype);
  return cudaGetLastError();
}

cudaError_t launch_residual_layer_norm(float* x, const float* y, const float* bias, const float* w,
                                       const float* b, float eps, int64_t n, int64_t e, void* out,
                                       KernelDType out_dtype, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  if (out == static_cast<void*>(x) || out == static_cast<const void*>(y)) return cudaErrorInvalidValue;
  residual_layer_norm_kernel<<<static_cast<unsigned>(n), kThreads, 0, stream>>>(x, y, bias, w, b, eps, e,
                                                                                out, out_dtype);
  return cudaGetLastError();
}

}  // namespace kvmesh
