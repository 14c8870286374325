// Embedding + positions: one block per token row; the twin of CpuBackend::embed.
#include "worker/cuda/elem.cuh"

namespace kvmesh {
namespace {

__global__ void embed_kernel(const void* wte, KernelDType wte_dtype, int64_t wte_rows,
                             int64_t vocab_begin, const void* wpe, KernelDType wpe_dtype,
                             const int32_t* tokens, const int32_t* positions, int64_t e, float* out) {
  const int64_t t = blockIdx.x;
  const int64_t row = static_cast<int64_t>(tokens[t]) - vocab_begin;
  const bool in_shard = row >= 0 && row < wte_rows;
  const int64_t pos = positions[t];
  for (int64_t i = threadIdx.x; i < e; i += blockDim.x) {
    float v = in_shard ? load_as_float(wte, wte_dtype, row * e + i) : 0.0f;
    if (wpe != nullptr) v += load_as_float(wpe, wpe_dtype, pos * e + i);
    out[t * e + i] = v;
  }
}

}  // namespace

cudaError_t launch_embed(const void* wte, KernelDType wte_dtype, int64_t wte_rows, int64_t vocab_begin,
                         const void* wpe, KernelDType wpe_dtype, const int32_t* tokens,
                         const int32_t* positions, int64_t n, int64_t e, float* out,
                         cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  embed_kernel<<<static_cast<unsigned>(n), 256, 0, stream>>>(wte, wte_dtype, wte_rows, vocab_begin,
                                                             wpe, wpe_dtype, tokens, positions, e, out);
  return cudaGetLastError();
}

}  // namespace kvmesh
