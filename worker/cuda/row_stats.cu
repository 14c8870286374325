// Logits to sampling: per row, the max, its first index and log(sum(exp(logit))), one block per
// row; the twin of CpuBackend::row_stats, NaNs included. Details: docs/gpu.md.
#include <cfloat>

#include "worker/cuda/elem.cuh"
#include "worker/cuda/launch.cuh"

namespace kvmesh {
namespace {

constexpr int kThreads = 1024;
constexpr int kLoads = 8;  // logits a thread loads before it compares or sums them

__global__ void row_stats_kernel(const float* logits, int64_t v, float* max_out, int32_t* argmax_out,
                                 float* lse_out) {
  begin_after_previous_kernel();
  __shared__ float best_v[kThreads];
  __shared__ int64_t best_i[kThreads];
  __shared__ float scratch[32];
  const float* row = logits + blockIdx.x * v;
  float bv = -FLT_MAX;
  int64_t bi = v;  // past the end: no element seen
  // A thread's indices rise through the loads and the passes: strictly greater keeps the first.
  for (int64_t base = threadIdx.x; base < v; base += kLoads * kThreads) {
    float got[kLoads];
#pragma unroll
    for (int u = 0; u < kLoads; ++u) got[u] = base + u * kThreads < v ? row[base + u * kThreads] : 0.0f;
#pragma unroll
    for (int u = 0; u < kLoads; ++u) {
      const int64_t i = base + u * kThreads;
      if (i >= v) break;
      const bool first_number = bi == v && !isnan(got[u]);
      if (first_number || got[u] > bv) {
        bv = got[u];
        bi = i;
      }
    }
  }
  best_v[threadIdx.x] = bv;
  best_i[threadIdx.x] = bi;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (static_cast<int>(threadIdx.x) < stride) {
      const float ov = best_v[threadIdx.x + stride];
      const int64_t oi = best_i[threadIdx.x + stride];
      const bool take = oi != v && (best_i[threadIdx.x] == v || ov > best_v[threadIdx.x] ||
                                    (ov == best_v[threadIdx.x] && oi < best_i[threadIdx.x]));
      if (take) {
        best_v[threadIdx.x] = ov;
        best_i[threadIdx.x] = oi;
      }
    }
    __syncthreads();
  }
  const bool nan_first = isnan(row[0]);
  const float m = nan_first ? row[0] : best_v[0];
  const int64_t argmax = nan_first ? 0 : best_i[0];
  float s = 0.0f;
  for (int64_t base = threadIdx.x; base < v; base += kLoads * kThreads) {
    float got[kLoads];
#pragma unroll
    for (int u = 0; u < kLoads; ++u) got[u] = base + u * kThreads < v ? row[base + u * kThreads] : m;
#pragma unroll
    for (int u = 0; u < kLoads; ++u)
      if (base + u * kThreads < v) s += expf(got[u] - m);
  }
  const float total = block_sum(s, scratch);
  if (threadIdx.x == 0) {
    max_out[blockIdx.x] = m;
    argmax_out[blockIdx.x] = static_cast<int32_t>(argmax);
    lse_out[blockIdx.x] = m + logf(total);
  }
}

}  // namespace

cudaError_t launch_row_stats(const float* logits, int64_t r, int64_t v, float* max, int32_t* argmax,
                             float* log_sum_exp, KernelStream stream) {
  if (r <= 0 || v <= 0) return cudaSuccess;
  return launch_kernel(row_stats_kernel, static_cast<unsigned>(r), kThreads, stream, logits, v, max, argmax,
                       log_sum_exp);
}

}  // namespace kvmesh
