// KV write: each token's K and V rows (fp32, from qkv) into its page slot in the page dtype (f32,
// f16, bf16; rounded to nearest even); one block per (token, K or V). The twin of cpu_kv_write.
#include "worker/cuda/elem.cuh"
#include "worker/cuda/launch.cuh"

namespace kvmesh {
namespace {

__global__ void kv_write_kernel(const float* qkv, const int32_t* slots, int32_t layer,
                                KvPoolGeometry pool) {
  begin_after_previous_kernel();
  const int64_t t = blockIdx.x;
  const int kv = static_cast<int>(blockIdx.y);
  const int64_t e = static_cast<int64_t>(pool.n_heads) * pool.head_dim;
  const int32_t slot = slots[t];
  if (slot < 0) return;  // a padded row of a graph's batch
  const int64_t page = slot / pool.block_size, offset = slot % pool.block_size;
  const int64_t dst = page * pool.page_elems +
                      ((static_cast<int64_t>(layer) * 2 + kv) * pool.block_size + offset) * e;
  const float* src = qkv + t * 3 * e + (kv + 1) * e;
  for (int64_t i = threadIdx.x; i < e; i += blockDim.x) store_from_float(pool.data, pool.dtype, dst + i, src[i]);
}

}  // namespace

cudaError_t launch_kv_write(const float* qkv, const int32_t* slots, int64_t n, int32_t layer,
                            const KvPoolGeometry& pool, KernelStream stream) {
  if (n <= 0) return cudaSuccess;
  return launch_kernel(kv_write_kernel, dim3(static_cast<unsigned>(n), 2), 256, stream, qkv, slots, layer, pool);
}

}  // namespace kvmesh
