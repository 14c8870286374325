// Embedding + positions: blocks of kThreads elements of one token row each, one element per thread
// (a row is one chain of loads, not one per kThreads elements); the twin of CpuBackend::embed.
#include "worker/cuda/elem.cuh"
#include "worker/cuda/launch.cuh"

namespace kvmesh {
namespace {

constexpr int kThreads = 256;

__global__ void embed_kernel(const void* wte, KernelDType wte_dtype, int64_t wte_rows,
                             int64_t vocab_begin, const void* wpe, KernelDType wpe_dtype,
                             const int32_t* tokens, const int32_t* positions, int64_t e, float* out) {
  begin_after_previous_kernel();
  const int64_t t = blockIdx.x;
  const int64_t i = static_cast<int64_t>(blockIdx.y) * kThreads + threadIdx.x;
  if (i >= e) return;
  const int64_t row = static_cast<int64_t>(tokens[t]) - vocab_begin;
  const bool in_shard = row >= 0 && row < wte_rows;
  float v = in_shard ? load_as_float(wte, wte_dtype, row * e + i) : 0.0f;
  if (wpe != nullptr) v += load_as_float(wpe, wpe_dtype, static_cast<int64_t>(positions[t]) * e + i);
  out[t * e + i] = v;
}

}  // namespace

cudaError_t launch_embed(const void* wte, KernelDType wte_dtype, int64_t wte_rows, int64_t vocab_begin,
                         const void* wpe, KernelDType wpe_dtype, const int32_t* tokens,
                         const int32_t* positions, int64_t n, int64_t e, float* out,
                         KernelStream stream) {
  if (n <= 0 || e <= 0) return cudaSuccess;
  const int64_t parts = (e + kThreads - 1) / kThreads;
  if (parts > 65535 || n > 0x7fffffff) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(n), static_cast<unsigned>(parts));
  return launch_kernel(embed_kernel, grid, kThreads, stream, wte, wte_dtype, wte_rows, vocab_begin, wpe, wpe_dtype,
                       tokens, positions, e, out);
}

}  // namespace kvmesh
