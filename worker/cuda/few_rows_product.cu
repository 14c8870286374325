// Products of a few rows (decode batches of up to kFewRowsMax): out = act(x @ w + bias), the weights
// streamed once in 16-byte loads; the twin of CpuBackend::linear_act. Details: docs/gpu.md.
#include "worker/cuda/elem.cuh"
#include "worker/cuda/launch.cuh"

namespace kvmesh {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kColsPerLane = 8;                        // one 16-byte load of f16/bf16
constexpr int kLanesPerRow = 8;                        // lanes sharing one row of a tile
constexpr int kTileCols = kColsPerLane * kLanesPerRow;  // 64
constexpr int kRowsPerPass = kThreads / kLanesPerRow;  // 32 rows of w in flight per block step
constexpr int kUnroll = 4;                             // loads a lane issues before using them
constexpr int kMaxChunk = 512;                         // rows of w (and of x staged) per block
constexpr int kTargetBlocks = 512;                     // enough blocks to keep every SM loading

// Rows of w per block for a product of k rows and n columns: a multiple of kRowsPerPass, small
// enough that the tiles times the chunks reach about kTargetBlocks blocks.
int32_t chunk_rows(int64_t k, int64_t n) {
  const int64_t tiles = (n + kTileCols - 1) / kTileCols;
  const int64_t want_splits = (kTargetBlocks + tiles - 1) / tiles;
  int64_t chunk = (k + want_splits - 1) / want_splits;
  chunk = (chunk + kRowsPerPass - 1) / kRowsPerPass * kRowsPerPass;
  if (chunk > kMaxChunk) chunk = kMaxChunk;
  return static_cast<int32_t>(chunk < kRowsPerPass ? kRowsPerPass : chunk);
}

// Chunks of rows of w (blocks per column tile) for a product of k rows and n columns.
int64_t chunk_count(int64_t k, int64_t n) {
  const int32_t chunk = chunk_rows(k, n);
  return (k + chunk - 1) / chunk;
}

__device__ __forceinline__ void store_result(float sum, int64_t at, int64_t col, const float* bias, int act,
                                             void* out, KernelDType out_dtype) {
  const float v = bias != nullptr ? sum + bias[col] : sum;
  store_from_float(out, out_dtype, at, activate(act, v));
}

// A lane's next kUnroll rows of w from row r0 (rows r0, r0 + kRowsPerPass, ...), zeros past `rows`.
template <typename T>
__device__ __forceinline__ void load_rows(const T* w_col, int64_t n, int r0, int rows, bool col_in,
                                          uint4 (&into)[kUnroll]) {
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    const int r = r0 + u * kRowsPerPass;
    into[u] = col_in && r < rows ? *reinterpret_cast<const uint4*>(w_col + static_cast<int64_t>(r) * n)
                                 : make_uint4(0, 0, 0, 0);
  }
}

template <int M, typename T>
__global__ void __launch_bounds__(kThreads)
    few_rows_kernel(const T* __restrict__ x, const T* __restrict__ w, int64_t k, int64_t n, int32_t chunk,
                    const float* __restrict__ bias, int act, void* out, KernelDType out_dtype, float* partial,
                    int32_t* arrivals) {
  __shared__ float xs[M][kMaxChunk];
  __shared__ float warp_sums[kWarps][M][kTileCols];
  __shared__ int32_t last_chunk;  // nonzero: this block is the last of its tile to finish
  const int tile = static_cast<int>(blockIdx.x), split = static_cast<int>(blockIdx.y);
  const int n_splits = static_cast<int>(gridDim.y);
  const int64_t row0 = static_cast<int64_t>(split) * chunk;
  const int32_t rows = static_cast<int32_t>(min(static_cast<int64_t>(chunk), k - row0));
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int group = lane % kLanesPerRow;                              // which 8 columns of the tile
  const int first_row = warp * (32 / kLanesPerRow) + lane / kLanesPerRow;  // 0..31
  const int64_t col = static_cast<int64_t>(tile) * kTileCols + group * kColsPerLane;
  const bool col_in = col < n;  // n is a multiple of 8: a lane's 8 columns are all in or all out
  const T* w_col = w + row0 * n + col;
  // The first rows of w are in flight while the kernel before finishes (when launched to overlap
  // it) and x is staged, and each later batch while the one before it is multiplied.
  uint4 next[kUnroll];
  load_rows(w_col, n, first_row, rows, col_in, next);
  begin_after_previous_kernel();
  for (int i = threadIdx.x; i < M * chunk; i += kThreads) {
    const int m = i / chunk, r = i % chunk;
    xs[m][r] = r < rows ? to_float(x[m * k + row0 + r]) : 0.0f;
  }
  __syncthreads();
  float acc[M][kColsPerLane];
#pragma unroll
  for (int m = 0; m < M; ++m)
#pragma unroll
    for (int j = 0; j < kColsPerLane; ++j) acc[m][j] = 0.0f;

  constexpr int kStep = kRowsPerPass * kUnroll;
  for (int r0 = first_row; r0 < rows; r0 += kStep) {
    uint4 loaded[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) loaded[u] = next[u];
    if (r0 + kStep < rows) load_rows(w_col, n, r0 + kStep, rows, col_in, next);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int r = r0 + u * kRowsPerPass;
      if (r >= rows) break;
      float wf[kColsPerLane];
      unpack8<T>(loaded[u], wf);
#pragma unroll
      for (int m = 0; m < M; ++m) {
        const float xv = xs[m][r];
#pragma unroll
        for (int j = 0; j < kColsPerLane; ++j) acc[m][j] += xv * wf[j];
      }
    }
  }
  // The warp's four rows per column, then the warps, in a fixed order.
#pragma unroll
  for (int m = 0; m < M; ++m)
#pragma unroll
    for (int j = 0; j < kColsPerLane; ++j) {
      float v = acc[m][j];
      v += __shfl_xor_sync(0xffffffffu, v, 8);
      v += __shfl_xor_sync(0xffffffffu, v, 16);
      acc[m][j] = v;
    }
  if (lane < kLanesPerRow) {
#pragma unroll
    for (int m = 0; m < M; ++m)
#pragma unroll
      for (int j = 0; j < kColsPerLane; ++j) warp_sums[warp][m][group * kColsPerLane + j] = acc[m][j];
  }
  __syncthreads();
  const int64_t tile_col = static_cast<int64_t>(tile) * kTileCols;
  for (int i = threadIdx.x; i < M * kTileCols; i += kThreads) {
    const int m = i / kTileCols, c = i % kTileCols;
    if (tile_col + c >= n) continue;
    float sum = 0.0f;
    for (int v = 0; v < kWarps; ++v) sum += warp_sums[v][m][c];
    if (n_splits == 1)
      store_result(sum, m * n + tile_col + c, tile_col + c, bias, act, out, out_dtype);
    else
      partial[(static_cast<int64_t>(split) * M + m) * n + tile_col + c] = sum;
  }
  if (n_splits == 1) return;
  __threadfence();  // this block's sums are visible to every block before it is counted
  __syncthreads();
  if (threadIdx.x == 0) {
    last_chunk = atomicAdd(arrivals + tile, 1) == n_splits - 1;
    if (last_chunk) arrivals[tile] = 0;  // every chunk has counted: ready for the next launch
  }
  __syncthreads();
  if (!last_chunk) return;
  __threadfence();
  for (int i = threadIdx.x; i < M * kTileCols; i += kThreads) {
    const int m = i / kTileCols, c = i % kTileCols;
    if (tile_col + c >= n) continue;
    float sum = 0.0f;
    for (int s = 0; s < n_splits; ++s) sum += __ldcg(partial + (static_cast<int64_t>(s) * M + m) * n + tile_col + c);
    store_result(sum, m * n + tile_col + c, tile_col + c, bias, act, out, out_dtype);
  }
}

template <typename T, int M>
cudaError_t launch_rows(const void* x, const void* w, int64_t k, int64_t n, const float* bias, int act, void* out,
                        KernelDType out_dtype, float* partial, int32_t* arrivals, KernelStream stream) {
  const dim3 grid(static_cast<unsigned>((n + kTileCols - 1) / kTileCols), static_cast<unsigned>(chunk_count(k, n)));
  return launch_kernel(few_rows_kernel<M, T>, grid, kThreads, stream, static_cast<const T*>(x),
                       static_cast<const T*>(w), k, n, chunk_rows(k, n), bias, act, out, out_dtype, partial, arrivals);
}

template <typename T>
cudaError_t launch_typed(int64_t m, const void* x, const void* w, int64_t k, int64_t n, const float* bias, int act,
                         void* out, KernelDType out_dtype, float* partial, int32_t* arrivals, KernelStream stream) {
  return for_row_count(m, [&](auto rows) {
    return launch_rows<T, decltype(rows)::value>(x, w, k, n, bias, act, out, out_dtype, partial, arrivals, stream);
  });
}

}  // namespace

bool few_rows_product_serves(int64_t m, int64_t k, int64_t n, KernelDType dtype, const void* w) {
  return m >= 1 && m <= kFewRowsMax && k >= 1 && n >= kColsPerLane && n % kColsPerLane == 0 &&
         (n + kTileCols - 1) / kTileCols <= kMaxSplitPairs && dtype != KernelDType::f32 &&
         reinterpret_cast<uintptr_t>(w) % 16 == 0;
}

int64_t few_rows_partial_floats(int64_t m, int64_t k, int64_t n) {
  const int64_t splits = chunk_count(k, n);
  return splits > 1 ? splits * m * n : 0;
}

cudaError_t launch_few_rows_product(const void* x, const void* w, KernelDType dtype, int64_t m, int64_t k, int64_t n,
                                    const float* bias, int act, void* out, KernelDType out_dtype, float* partial,
                                    int32_t* arrivals, KernelStream stream) {
  if (!few_rows_product_serves(m, k, n, dtype, w) || (few_rows_partial_floats(m, k, n) > 0 && partial == nullptr) ||
      chunk_count(k, n) > 65535)
    return cudaErrorInvalidValue;
  if (dtype == KernelDType::f16)
    return launch_typed<__half>(m, x, w, k, n, bias, act, out, out_dtype, partial, arrivals, stream);
  return launch_typed<__nv_bfloat16>(m, x, w, k, n, bias, act, out, out_dtype, partial, arrivals, stream);
}

}  // namespace kvmesh
