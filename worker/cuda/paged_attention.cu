// Paged attention for prefill and decode (causal, optionally over a window of the last positions),
// one block per (row, head, split of the context), writing decode rows' K and V too; the twin of
// cpu_paged_attention. Details: docs/gpu.md.
#include <cmath>

#include "worker/cuda/elem.cuh"
#include "worker/cuda/launch.cuh"

namespace kvmesh {
namespace {

constexpr int kWarps = 8;
// Keys one warp loads and scores together: 8 while a lane owns at most 2 elements of a head (64
// wide), else 4 (the loads stay in registers).
constexpr int keys_per_warp(int per_lane) { return per_lane <= 2 ? 8 : 4; }

// The splits' partials of one (row, head), [n_splits][d + 2] as (max, sum, output[d]), reduced
// into out at `at` by the block's threads. They were written by other blocks of this kernel: read
// from L2 (__ldcg), never from a line this SM's L1 may hold from an earlier launch.
__device__ void combine_splits(const float* part, int n_splits, int d, void* out, KernelDType out_dtype,
                               int64_t at) {
  float block_max = -INFINITY;
  for (int s = 0; s < n_splits; ++s) block_max = fmaxf(block_max, __ldcg(part + s * (d + 2)));
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    float sum = 0.0f, o = 0.0f;
    for (int s = 0; s < n_splits; ++s) {
      const float* p = part + s * (d + 2);
      const float m = __ldcg(p);
      if (m == -INFINITY) continue;  // a split that holds no key of the row
      const float f = expf(m - block_max);
      sum += __ldcg(p + 1) * f;
      o += __ldcg(p + 2 + c) * f;
    }
    store_from_float(out, out_dtype, at + c, sum > 0.0f ? o / sum : 0.0f);
  }
}

// Element offset of head h's K row at (page, offset) of `layer`; its V row is block_size * E later.
__device__ __forceinline__ int64_t key_row(const KvPoolGeometry& pool, int32_t layer, int64_t page, int32_t offset,
                                           int h) {
  const int64_t e = static_cast<int64_t>(pool.n_heads) * pool.head_dim;
  return page * pool.page_elems + ((static_cast<int64_t>(layer) * 2) * pool.block_size + offset) * e +
         static_cast<int64_t>(h) * pool.head_dim;
}

// A lane's elements of one head's K and V from qkv (own_kv: the row's K of this head; V is E later)
// rounded to the page dtype, written to slot `slot` as launch_kv_write writes them, and returned
// as the page now holds them.
template <typename T, int kPerLane>
__device__ __forceinline__ void write_own_kv(const KvPoolGeometry& pool, int32_t layer, int32_t slot, int h,
                                             const float* own_kv, float (&k)[kPerLane], float (&v)[kPerLane]) {
  const int64_t e = static_cast<int64_t>(pool.n_heads) * pool.head_dim;
  const int64_t k_at = key_row(pool, layer, slot / pool.block_size, slot % pool.block_size, h);
  const int64_t v_at = k_at + static_cast<int64_t>(pool.block_size) * e;
  T* pages = static_cast<T*>(pool.data);
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int c = lane * kPerLane + i;
    k[i] = v[i] = 0.0f;
    if (c >= pool.head_dim) continue;
    const T kt = from_float<T>(own_kv[c]), vt = from_float<T>(own_kv[e + c]);
    pages[k_at + c] = kt;
    pages[v_at + c] = vt;
    k[i] = to_float(kt);
    v[i] = to_float(vt);
  }
}

// A lane's kPer consecutive elements of a head as one load.
template <typename T, int kPer>
struct alignas(sizeof(T) * kPer) HeadPart {
  T e[kPer];
};

// Lane `lane`'s elements [lane * kPer, lane * kPer + kPer) of one head's row in the pages as fp32
// (0 past head_dim d, and everywhere when !real). whole: d is a multiple of kPer, so a lane's
// elements are all in the head or all past it and aligned for one load of them all.
template <typename T, int kPer>
__device__ __forceinline__ void load_head_part(const T* row, int lane, int d, bool whole, bool real,
                                               float (&out)[kPer]) {
  const int c0 = lane * kPer;
  if (whole) {
    if (real && c0 < d) {
      const HeadPart<T, kPer> part = *reinterpret_cast<const HeadPart<T, kPer>*>(row + c0);
#pragma unroll
      for (int i = 0; i < kPer; ++i) out[i] = to_float(part.e[i]);
    } else {
#pragma unroll
      for (int i = 0; i < kPer; ++i) out[i] = 0.0f;
    }
    return;
  }
#pragma unroll
  for (int i = 0; i < kPer; ++i) out[i] = real && c0 + i < d ? to_float(row[c0 + i]) : 0.0f;
}

// kPerLane: consecutive head elements each lane owns (head_dim <= 32 * kPerLane).
template <typename T, int kPerLane>
__global__ void __launch_bounds__(kWarps * 32)
    attention_kernel(const float* qkv, AttentionRows rows, int32_t layer, KvPoolGeometry pool,
                     float scale, int32_t window, float* partial, int32_t* arrivals, void* out, KernelDType out_dtype) {
  begin_after_previous_kernel();
  __shared__ float warp_max[kWarps], warp_sum_[kWarps];
  __shared__ float warp_acc[kWarps][32 * kPerLane];
  __shared__ int32_t last_split;  // nonzero: this block is the last split of its (row, head) to finish
  const int64_t t = rows.listed != nullptr ? rows.listed[blockIdx.x] : blockIdx.x;
  const int h = static_cast<int>(blockIdx.y), split = static_cast<int>(blockIdx.z);
  const int n_splits = static_cast<int>(gridDim.z);
  const int d = pool.head_dim, bs = pool.block_size;
  const int64_t e = static_cast<int64_t>(pool.n_heads) * d;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int32_t n_ctx = rows.row_ctx[t];
  const int32_t* table = rows.tables + rows.row_table[t];
  const int32_t first = window > 0 ? max(0, n_ctx - window) : 0;  // the row's first visible key
  const int32_t share = (n_ctx - first + n_splits - 1) / n_splits;  // keys per split of this row
  const int32_t begin = min(n_ctx, first + split * share);
  const int32_t end = min(n_ctx, begin + share);
  const T* kv = static_cast<const T*>(pool.data);
  // The row's own position, when this kernel writes its K and V: from qkv, not from the pages.
  const int32_t own_slot = rows.write_slots != nullptr ? rows.write_slots[t] : -1;
  const int32_t own = own_slot >= 0 ? n_ctx - 1 : -1;
  const float* own_kv = qkv + t * 3 * e + e + h * d;  // K; V follows E later
  const bool whole_parts = d % kPerLane == 0;

  float q[kPerLane], acc[kPerLane];
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int c = lane * kPerLane + i;
    q[i] = c < d ? qkv[t * 3 * e + h * d + c] * scale : 0.0f;
    acc[i] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  constexpr int kKeysPerWarp = keys_per_warp(kPerLane);
  for (int32_t j0 = begin + warp * kKeysPerWarp; j0 < end; j0 += kWarps * kKeysPerWarp) {
    // Every load first (keys past `end` read nothing), then the scores: warp-uniform branches.
    float k[kKeysPerWarp][kPerLane], v[kKeysPerWarp][kPerLane];
#pragma unroll
    for (int u = 0; u < kKeysPerWarp; ++u) {
      const int32_t j = j0 + u;
      const bool real = j < end;
      if (real && j == own) {
        write_own_kv<T, kPerLane>(pool, layer, own_slot, h, own_kv, k[u], v[u]);
        continue;
      }
      const int64_t k_row = key_row(pool, layer, real ? table[j / bs] : 0, j % bs, h);
      const int64_t v_row = k_row + static_cast<int64_t>(bs) * e;  // V rows follow the layer's K rows
      load_head_part<T, kPerLane>(kv + k_row, lane, d, whole_parts, real, k[u]);
      load_head_part<T, kPerLane>(kv + v_row, lane, d, whole_parts, real, v[u]);
    }
    float s[kKeysPerWarp];
    float m_new = m;
#pragma unroll
    for (int u = 0; u < kKeysPerWarp; ++u) {
      float dot = 0.0f;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) dot += q[i] * k[u][i];
      s[u] = j0 + u < end ? warp_sum(dot) : -INFINITY;
      m_new = fmaxf(m_new, s[u]);
    }
    const float correction = expf(m - m_new);  // 0 for the first keys (m = -inf)
    l *= correction;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) acc[i] *= correction;
#pragma unroll
    for (int u = 0; u < kKeysPerWarp; ++u) {
      const float p = expf(s[u] - m_new);  // 0 for a key past `end`
      l += p;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) acc[i] += p * v[u][i];
    }
    m = m_new;
  }
  if (lane == 0) {
    warp_max[warp] = m;
    warp_sum_[warp] = l;
  }
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int c = lane * kPerLane + i;
    if (c < d) warp_acc[warp][c] = acc[i];
  }
  __syncthreads();
  float block_max = -INFINITY;
  for (int w = 0; w < kWarps; ++w) block_max = fmaxf(block_max, warp_max[w]);
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    float sum = 0.0f, o = 0.0f;
    for (int w = 0; w < kWarps; ++w) {
      if (warp_max[w] == -INFINITY) continue;  // a warp that saw no key
      const float f = expf(warp_max[w] - block_max);
      sum += warp_sum_[w] * f;
      o += warp_acc[w][c] * f;
    }
    if (n_splits == 1) {
      // sum > 0 for a real row (it sees itself); a padded row (no context) gets zeros.
      store_from_float(out, out_dtype, t * e + h * d + c, sum > 0.0f ? o / sum : 0.0f);
    } else {
      float* part = partial + ((t * pool.n_heads + h) * n_splits + split) * (d + 2);
      part[2 + c] = o;
      if (c == 0) {
        part[0] = block_max;  // -inf when this split holds no key of the row
        part[1] = sum;
      }
    }
  }
  if (n_splits == 1) return;
  __threadfence();  // this block's partial is visible to every block before it is counted
  __syncthreads();
  if (threadIdx.x == 0) {
    int32_t* arrived = arrivals + blockIdx.x * static_cast<int64_t>(pool.n_heads) + h;
    last_split = atomicAdd(arrived, 1) == n_splits - 1;
    if (last_split) *arrived = 0;  // every split has counted: ready for the next launch
  }
  __syncthreads();
  if (!last_split) return;
  __threadfence();
  combine_splits(partial + (t * pool.n_heads + h) * n_splits * (d + 2), n_splits, d, out, out_dtype,
                 t * e + h * d);
}

template <typename T, int kPerLane>
cudaError_t launch_typed(const float* qkv, const AttentionRows& rows, int64_t n, int32_t layer,
                         const KvPoolGeometry& pool, float scale, int32_t window, int32_t n_splits, float* partial,
                         int32_t* arrivals, void* out, KernelDType out_dtype, KernelStream stream) {
  const dim3 grid(static_cast<unsigned>(n), static_cast<unsigned>(pool.n_heads),
                  static_cast<unsigned>(n_splits));
  return launch_kernel(attention_kernel<T, kPerLane>, grid, kWarps * 32, stream, qkv, rows, layer, pool, scale, window, partial,
                       arrivals, out, out_dtype);
}

// The kernel whose lanes own just enough of the head (fewer registers for small heads).
template <typename T>
cudaError_t launch_for_head(const float* qkv, const AttentionRows& rows, int64_t n, int32_t layer,
                            const KvPoolGeometry& pool, float scale, int32_t window, int32_t n_splits, float* partial,
                            int32_t* arrivals, void* out, KernelDType out_dtype, KernelStream stream) {
  if (pool.head_dim <= 64)
    return launch_typed<T, 2>(qkv, rows, n, layer, pool, scale, window, n_splits, partial, arrivals, out, out_dtype, stream);
  if (pool.head_dim <= 128)
    return launch_typed<T, 4>(qkv, rows, n, layer, pool, scale, window, n_splits, partial, arrivals, out, out_dtype, stream);
  return launch_typed<T, kMaxHeadDim / 32>(qkv, rows, n, layer, pool, scale, window, n_splits, partial, arrivals, out, out_dtype,
                                           stream);
}

}  // namespace

cudaError_t launch_paged_attention(const float* qkv, const AttentionRows& rows, int64_t n,
                                   int32_t layer, const KvPoolGeometry& pool, float scale, int32_t window,
                                   int32_t n_splits, float* partial, int32_t* arrivals, void* out,
                                   KernelDType out_dtype, KernelStream stream) {
  if (n <= 0) return cudaSuccess;
  if (window < 0) return cudaErrorInvalidValue;
  if (pool.head_dim < 1 || pool.head_dim > kMaxHeadDim || n_splits < 1 || n_splits > 65535 ||
      pool.n_heads > 65535 ||
      (n_splits > 1 && (partial == nullptr || arrivals == nullptr || n * pool.n_heads > kMaxSplitPairs)))
    return cudaErrorInvalidValue;
  switch (pool.dtype) {
    case KernelDType::f16:
      return launch_for_head<__half>(qkv, rows, n, layer, pool, scale, window, n_splits, partial, arrivals, out, out_dtype,
                                     stream);
    case KernelDType::bf16:
      return launch_for_head<__nv_bfloat16>(qkv, rows, n, layer, pool, scale, window, n_splits, partial, arrivals, out,
                                            out_dtype, stream);
    default:
      return launch_for_head<float>(qkv, rows, n, layer, pool, scale, window, n_splits, partial, arrivals, out, out_dtype,
                                    stream);
  }
}

}  // namespace kvmesh
