// LayerNorm over the last dim, one block per row, alone or after a residual add; the twin of
// CpuBackend::layer_norm. Details: docs/gpu.md.
#include "worker/cuda/elem.cuh"
#include "worker/cuda/launch.cuh"

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

// The same normalisation for a row held in registers: thread t holds elements t + j * kThreads of
// it in v[j] (0 past e), and stores them normalised into out's row.
template <int kPer>
__device__ __forceinline__ void normalise_held(const float (&v)[kPer], const float (&wv)[kPer], const float (&bv)[kPer],
                                               float eps, int64_t e, void* out, KernelDType out_dtype,
                                               int64_t out_at, float* scratch) {
  float sum = 0.0f;
#pragma unroll
  for (int j = 0; j < kPer; ++j) sum += v[j];
  const float mean = block_sum(sum, scratch) / static_cast<float>(e);
  float sq = 0.0f;
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const float d = threadIdx.x + j * kThreads < e ? v[j] - mean : 0.0f;
    sq += d * d;
  }
  const float var = block_sum(sq, scratch) / static_cast<float>(e);
  const float inv = rsqrtf(var + eps);
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int64_t i = threadIdx.x + j * kThreads;
    if (i < e) store_from_float(out, out_dtype, out_at + i, (v[j] - mean) * inv * wv[j] + bv[j]);
  }
}

// Thread t's elements t + j * kThreads of row (+ y_row + bias when y_row is set), of w and of b,
// every load issued before any is used (0 past e).
template <int kPer>
__device__ __forceinline__ void load_held(const float* row, const float* y_row, const float* bias, const float* w,
                                          const float* b, int64_t e, float (&v)[kPer], float (&wv)[kPer],
                                          float (&bv)[kPer]) {
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int64_t i = threadIdx.x + j * kThreads;
    const bool in = i < e;
    const float yb = in && y_row != nullptr ? (bias != nullptr ? y_row[i] + bias[i] : y_row[i]) : 0.0f;
    v[j] = in ? row[i] + yb : 0.0f;
    wv[j] = in ? w[i] : 0.0f;
    bv[j] = in ? b[i] : 0.0f;
  }
}

template <int kPer>
__global__ void __launch_bounds__(kThreads)
    layer_norm_held_kernel(const float* x, const float* w, const float* b, float eps, int64_t e, void* out,
                           KernelDType out_dtype) {
  begin_after_previous_kernel();
  __shared__ float scratch[32];
  float v[kPer], wv[kPer], bv[kPer];
  load_held<kPer>(x + blockIdx.x * e, nullptr, nullptr, w, b, e, v, wv, bv);
  normalise_held<kPer>(v, wv, bv, eps, e, out, out_dtype, blockIdx.x * e, scratch);
}

// x += (y + bias[col]); out = LayerNorm(x), the row in registers.
template <int kPer>
__global__ void __launch_bounds__(kThreads)
    residual_layer_norm_held_kernel(float* x, const float* y, const float* bias, const float* w, const float* b,
                                    float eps, int64_t e, void* out, KernelDType out_dtype) {
  begin_after_previous_kernel();
  __shared__ float scratch[32];
  float* row = x + blockIdx.x * e;
  float v[kPer], wv[kPer], bv[kPer];
  load_held<kPer>(row, y + blockIdx.x * e, bias, w, b, e, v, wv, bv);
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int64_t i = threadIdx.x + j * kThreads;
    if (i < e) row[i] = v[j];
  }
  normalise_held<kPer>(v, wv, bv, eps, e, out, out_dtype, blockIdx.x * e, scratch);
}

// Per-thread elements of a held row of e values: the smallest of 2, 4, ..., kMaxPerThread that
// fits, or 0 when the row is longer.
constexpr int kMaxPerThread = 32;
int held_per_thread(int64_t e) {
  for (int per = 2; per <= kMaxPerThread; per *= 2)
    if (e <= static_cast<int64_t>(per) * kThreads) return per;
  return 0;
}

// Launches Launch<per> (per from held_per_thread) through a switch over the instantiated sizes, its
// error in *launched; false when the row is too long to hold (nothing launched).
template <template <int> class Launch, typename... Args>
bool launch_held(int64_t e, cudaError_t* launched, Args... args) {
  switch (held_per_thread(e)) {
    case 2: *launched = Launch<2>::run(args...); return true;
    case 4: *launched = Launch<4>::run(args...); return true;
    case 8: *launched = Launch<8>::run(args...); return true;
    case 16: *launched = Launch<16>::run(args...); return true;
    case 32: *launched = Launch<32>::run(args...); return true;
    default: return false;
  }
}

template <int kPer>
struct LayerNormHeld {
  static cudaError_t run(const float* x, const float* w, const float* b, float eps, int64_t n, int64_t e, void* out,
                         KernelDType out_dtype, KernelStream stream) {
    return launch_kernel(layer_norm_held_kernel<kPer>, static_cast<unsigned>(n), kThreads, stream, x, w, b, eps, e,
                         out, out_dtype);
  }
};

template <int kPer>
struct ResidualLayerNormHeld {
  static cudaError_t run(float* x, const float* y, const float* bias, const float* w, const float* b, float eps,
                         int64_t n, int64_t e, void* out, KernelDType out_dtype, KernelStream stream) {
    return launch_kernel(residual_layer_norm_held_kernel<kPer>, static_cast<unsigned>(n), kThreads, stream, x, y,
                         bias, w, b, eps, e, out, out_dtype);
  }
};

__global__ void layer_norm_kernel(const float* x, const float* w, const float* b, float eps, int64_t e,
                                  void* out, KernelDType out_dtype) {
  begin_after_previous_kernel();
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
  begin_after_previous_kernel();
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
                              int64_t e, void* out, KernelDType out_dtype, KernelStream stream) {
  if (n <= 0) return cudaSuccess;
  if (out_dtype != KernelDType::f32 && static_cast<const void*>(x) == out) return cudaErrorInvalidValue;
  cudaError_t launched = cudaSuccess;
  if (launch_held<LayerNormHeld>(e, &launched, x, w, b, eps, n, e, out, out_dtype, stream)) return launched;
  return launch_kernel(layer_norm_kernel, static_cast<unsigned>(n), kThreads, stream, x, w, b, eps, e, out, out_dtype);
}

cudaError_t launch_residual_layer_norm(float* x, const float* y, const float* bias, const float* w,
                                       const float* b, float eps, int64_t n, int64_t e, void* out,
                                       KernelDType out_dtype, KernelStream stream) {
  if (n <= 0) return cudaSuccess;
  if (out == static_cast<void*>(x) || out == static_cast<const void*>(y)) return cudaErrorInvalidValue;
  cudaError_t launched = cudaSuccess;
  if (launch_held<ResidualLayerNormHeld>(e, &launched, x, y, bias, w, b, eps, n, e, out, out_dtype, stream))
    return launched;
  return launch_kernel(residual_layer_norm_kernel, static_cast<unsigned>(n), kThreads, stream, x, y, bias, w, b, eps,
                       e, out, out_dtype);
}

}  // namespace kvmesh
