// Tiled paged attention for prefill chunks with head_dim 64 (scaled as asked, optionally windowed),
// one block per (tile of up to 64 query rows, head); the twin of cpu_paged_attention. Details: docs/gpu.md.
#include <cmath>

#include "worker/cuda/elem.cuh"
#include "worker/cuda/launch.cuh"

namespace kvmesh {
namespace {

constexpr int kDim = 64;        // head_dim this kernel serves
constexpr int kRows = kPrefillTileRows;
constexpr int kKeys = 64;       // keys staged at once
constexpr int kChunk = 16;      // scores computed before one rescale
static_assert(kKeys == kRows, "each thread stages one key's page offset");
static_assert(kKeys % kChunk == 0, "chunks tile a staged block of keys");

template <typename T>
__global__ void __launch_bounds__(kRows)
    prefill_attention_kernel(const float* qkv, const PrefillTile* tiles, const int32_t* tables,
                             int32_t layer, KvPoolGeometry pool, float scale, int32_t window, void* out,
                             KernelDType out_dtype) {
  begin_after_previous_kernel();
  __shared__ __align__(16) float k_tile[kKeys][kDim];
  __shared__ __align__(16) float v_tile[kKeys][kDim];
  __shared__ int64_t key_row[kKeys];  // element offset of each staged key's K row
  const PrefillTile tile = tiles[blockIdx.x];
  const int h = static_cast<int>(blockIdx.y);
  const int i = static_cast<int>(threadIdx.x);
  const int bs = pool.block_size;
  const int64_t e = static_cast<int64_t>(pool.n_heads) * kDim;
  const T* kv = static_cast<const T*>(pool.data);
  const int32_t* table = tables + tile.table_at;
  const bool active = i < tile.n_rows;
  const int64_t row = static_cast<int64_t>(tile.row_begin) + i;
  const int32_t last_key = tile.n_past + i;  // causal: keys [first_key, last_key]
  const int32_t first_key = window > 0 ? last_key - window + 1 : 0;  // (may be negative: none cut)
  const int32_t n_keys = tile.n_past + tile.n_rows;  // keys any row of the tile sees
  const int32_t tile_first = window > 0 ? max(0, tile.n_past - window + 1) : 0;  // row 0's first key

  float q[kDim], acc[kDim];
  if (active) {
    const float4* q4 = reinterpret_cast<const float4*>(qkv + row * 3 * e + h * kDim);
#pragma unroll
    for (int c = 0; c < kDim / 4; ++c) {
      const float4 v = q4[c];
      q[4 * c] = v.x * scale;
      q[4 * c + 1] = v.y * scale;
      q[4 * c + 2] = v.z * scale;
      q[4 * c + 3] = v.w * scale;
    }
  }
#pragma unroll
  for (int c = 0; c < kDim; ++c) {
    if (!active) q[c] = 0.0f;
    acc[c] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;

  for (int32_t base = tile_first; base < n_keys; base += kKeys) {
    const int32_t tile_keys = min(kKeys, n_keys - base);
    __syncthreads();  // the previous tile is no longer read
    if (i < tile_keys) {
      const int32_t j = base + i;
      key_row[i] = static_cast<int64_t>(table[j / bs]) * pool.page_elems +
                   ((static_cast<int64_t>(layer) * 2) * bs + j % bs) * e + h * kDim;
    }
    __syncthreads();
    // Consecutive threads take consecutive elements of one key's row (coalesced reads).
    for (int idx = i; idx < tile_keys * kDim; idx += kRows) {
      const int key = idx / kDim, c = idx % kDim;
      const int64_t k_at = key_row[key] + c;
      k_tile[key][c] = to_float(kv[k_at]);
      v_tile[key][c] = to_float(kv[k_at + static_cast<int64_t>(bs) * e]);  // V rows follow K rows
    }
    __syncthreads();
    if (!active) continue;
    for (int c0 = 0; c0 < tile_keys; c0 += kChunk) {
      float s[kChunk];
      float chunk_max = -INFINITY;
#pragma unroll
      for (int k = 0; k < kChunk; ++k) {
        const int key = c0 + k;
        float dot = -INFINITY;
        if (key < tile_keys && base + key <= last_key && base + key >= first_key) {
          const float4* k4 = reinterpret_cast<const float4*>(k_tile[key]);
          dot = 0.0f;
#pragma unroll
          for (int c = 0; c < kDim / 4; ++c) {
            const float4 kk = k4[c];
            dot += q[4 * c] * kk.x + q[4 * c + 1] * kk.y + q[4 * c + 2] * kk.z + q[4 * c + 3] * kk.w;
          }
        }
        s[k] = dot;
        chunk_max = fmaxf(chunk_max, dot);
      }
      if (chunk_max == -INFINITY) continue;  // every key of the chunk is outside this row's window
      const float m_new = fmaxf(m, chunk_max);
      const float correction = expf(m - m_new);  // 0 while m is -inf
      l *= correction;
#pragma unroll
      for (int c = 0; c < kDim; ++c) acc[c] *= correction;
#pragma unroll
      for (int k = 0; k < kChunk; ++k) {
        if (s[k] == -INFINITY) continue;
        const float p = expf(s[k] - m_new);
        l += p;
        const float4* v4 = reinterpret_cast<const float4*>(v_tile[c0 + k]);
#pragma unroll
        for (int c = 0; c < kDim / 4; ++c) {
          const float4 vv = v4[c];
          acc[4 * c] += p * vv.x;
          acc[4 * c + 1] += p * vv.y;
          acc[4 * c + 2] += p * vv.z;
          acc[4 * c + 3] += p * vv.w;
        }
      }
      m = m_new;
    }
  }
  if (!active) return;
  const float inv = 1.0f / l;  // every row sees at least itself, so l > 0
  const int64_t at = row * e + h * kDim;
  if (out_dtype == KernelDType::f32) {
    float4* o4 = reinterpret_cast<float4*>(static_cast<float*>(out) + at);
#pragma unroll
    for (int c = 0; c < kDim / 4; ++c)
      o4[c] = make_float4(acc[4 * c] * inv, acc[4 * c + 1] * inv, acc[4 * c + 2] * inv, acc[4 * c + 3] * inv);
  } else {
#pragma unroll
    for (int c = 0; c < kDim; ++c) store_from_float(out, out_dtype, at + c, acc[c] * inv);
  }
}

template <typename T>
cudaError_t launch_typed(const float* qkv, const PrefillTile* tiles, int64_t n_tiles, const int32_t* tables,
                         int32_t layer, const KvPoolGeometry& pool, float scale, int32_t window, void* out,
                         KernelDType out_dtype, KernelStream stream) {
  const dim3 grid(static_cast<unsigned>(n_tiles), static_cast<unsigned>(pool.n_heads));
  return launch_kernel(prefill_attention_kernel<T>, grid, kRows, stream, qkv, tiles, tables, layer, pool, scale,
                       window, out, out_dtype);
}

}  // namespace

bool prefill_attention_serves(const KvPoolGeometry& pool) { return pool.head_dim == kDim; }

cudaError_t launch_prefill_attention(const float* qkv, const PrefillTile* tiles, int64_t n_tiles,
                                     const int32_t* tables, int32_t layer, const KvPoolGeometry& pool,
                                     float scale, int32_t window, void* out, KernelDType out_dtype,
                                     KernelStream stream) {
  if (n_tiles <= 0) return cudaSuccess;
  if (!prefill_attention_serves(pool) || window < 0 || n_tiles > 2147483647 || pool.n_heads > 65535)
    return cudaErrorInvalidValue;
  switch (pool.dtype) {
    case KernelDType::f16:
      return launch_typed<__half>(qkv, tiles, n_tiles, tables, layer, pool, scale, window, out, out_dtype, stream);
    case KernelDType::bf16:
      return launch_typed<__nv_bfloat16>(qkv, tiles, n_tiles, tables, layer, pool, scale, window, out, out_dtype, stream);
    default: return launch_typed<float>(qkv, tiles, n_tiles, tables, layer, pool, scale, window, out, out_dtype, stream);
  }
}

}  // namespace kvmesh
