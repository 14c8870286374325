// The LM head of a few rows (decode batches of up to kFewRowsMax), a warp per vocabulary row; the
// twin of CpuBackend::lm_head. Details: docs/gpu.md.
#include "worker/cuda/elem.cuh"
#include "worker/cuda/launch.cuh"

namespace kvmesh {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kPerPiece = 8;        // elements in one 16-byte load of f16/bf16
constexpr int kMaxPiecesPerLane = 8;  // e up to 32 lanes x 8 pieces x 8 = 2048 elements
constexpr int kBlocks = 1024;       // a grid-stride loop over the vocabulary

template <int M, typename T>
__global__ void __launch_bounds__(kThreads)
    lm_head_kernel(const T* __restrict__ x, const T* __restrict__ wte, int64_t v, int64_t e, float* logits) {
  const int lane = threadIdx.x % 32;
  const int pieces = static_cast<int>(e / kPerPiece);
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarps;
  bool waited = false;  // for the kernel before, once this warp's first row of wte is in flight
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32; row < v; row += warps) {
    const T* w_row = wte + row * e;
    uint4 loaded[kMaxPiecesPerLane];
#pragma unroll
    for (int p = 0; p < kMaxPiecesPerLane; ++p) {
      const int piece = lane + 32 * p;
      loaded[p] = piece < pieces ? *reinterpret_cast<const uint4*>(w_row + piece * kPerPiece) : make_uint4(0, 0, 0, 0);
    }
    if (!waited) {
      begin_after_previous_kernel();
      waited = true;
    }
    float acc[M];
#pragma unroll
    for (int m = 0; m < M; ++m) acc[m] = 0.0f;
#pragma unroll
    for (int p = 0; p < kMaxPiecesPerLane; ++p) {
      const int piece = lane + 32 * p;
      if (piece >= pieces) break;
      float wf[kPerPiece];
      unpack8<T>(loaded[p], wf);
#pragma unroll
      for (int m = 0; m < M; ++m) {
        float xf[kPerPiece];
        unpack8<T>(*reinterpret_cast<const uint4*>(x + m * e + piece * kPerPiece), xf);
#pragma unroll
        for (int j = 0; j < kPerPiece; ++j) acc[m] += xf[j] * wf[j];
      }
    }
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const float total = warp_sum(acc[m]);
      if (lane == 0) logits[m * v + row] = total;
    }
  }
  if (!waited) begin_after_previous_kernel();  // a warp past the vocabulary's end
}

template <typename T, int M>
cudaError_t launch_rows(const void* x, const void* wte, int64_t v, int64_t e, float* logits, KernelStream stream) {
  const int64_t blocks = (v + kWarps - 1) / kWarps;
  return launch_kernel(lm_head_kernel<M, T>, static_cast<unsigned>(blocks < kBlocks ? blocks : kBlocks), kThreads,
                       stream, static_cast<const T*>(x), static_cast<const T*>(wte), v, e, logits);
}

template <typename T>
cudaError_t launch_typed(int64_t m, const void* x, const void* wte, int64_t v, int64_t e, float* logits,
                         KernelStream stream) {
  return for_row_count(m, [&](auto rows) {
    return launch_rows<T, decltype(rows)::value>(x, wte, v, e, logits, stream);
  });
}

}  // namespace

bool few_rows_lm_head_serves(int64_t m, int64_t v, int64_t e, KernelDType dtype, const void* x, const void* wte) {
  // e from 256: every lane of a row's warp has a piece (narrower rows leave most of them idle).
  return m >= 1 && m <= kFewRowsMax && v >= 1 && e >= 32 * kPerPiece && e % kPerPiece == 0 &&
         e <= 32 * kMaxPiecesPerLane * kPerPiece && dtype != KernelDType::f32 &&
         reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(wte) % 16 == 0;
}

cudaError_t launch_few_rows_lm_head(const void* x, const void* wte, KernelDType dtype, int64_t m, int64_t v, int64_t e,
                                    float* logits, KernelStream stream) {
  if (!few_rows_lm_head_serves(m, v, e, dtype, x, wte)) return cudaErrorInvalidValue;
  if (dtype == KernelDType::f16) return launch_typed<__half>(m, x, wte, v, e, logits, stream);
  return launch_typed<__nv_bfloat16>(m, x, wte, v, e, logits, stream);
}

}  // namespace kvmesh
