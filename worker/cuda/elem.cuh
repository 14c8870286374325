// Device helpers shared by the kernels: loads and stores of f32/f16/bf16 elements as fp32, warp and
// block reductions, grid sizes.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "worker/cuda/kernels.h"

namespace kvmesh {

// Programmatic dependent launch (KernelStream::overlap in kernels.h): a kernel launched to overlap
// the kernel before it on its stream may start while that one still runs. Before this call each
// thread may load only what no kernel writes (weights); every thread of every block calls it, on
// every path, before it reads or writes anything else. It returns at once for a kernel launched
// the plain way, and for code built below sm_90 (whose kernels are never launched to overlap).
__device__ __forceinline__ void wait_for_previous_kernel() {
#if defined(KVMESH_EMULATED_DEVICE)
  ::cuemu::grid_dependency_wait();
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Lets the next kernel on the stream, when it is launched to overlap, place its blocks once every
// block of this one has called this or ended; they stop in their own wait_for_previous_kernel until
// this kernel has finished. Called right after the wait, so at most two kernels overlap.
__device__ __forceinline__ void let_next_kernel_start() {
#if !defined(KVMESH_EMULATED_DEVICE) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// The start of a kernel with nothing to load before the kernel before it has finished.
__device__ __forceinline__ void begin_after_previous_kernel() {
  wait_for_previous_kernel();
  let_next_kernel_start();
}

__device__ __forceinline__ float load_as_float(const void* base, KernelDType dtype, int64_t i) {
  switch (dtype) {
    case KernelDType::f16: return __half2float(static_cast<const __half*>(base)[i]);
    case KernelDType::bf16: return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[i]);
    default: return static_cast<const float*>(base)[i];
  }
}

// fp32 as a stored element of type T, rounded to nearest even.
template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

__device__ __forceinline__ void store_from_float(void* base, KernelDType dtype, int64_t i, float v) {
  switch (dtype) {
    case KernelDType::f16: static_cast<__half*>(base)[i] = from_float<__half>(v); break;
    case KernelDType::bf16: static_cast<__nv_bfloat16*>(base)[i] = from_float<__nv_bfloat16>(v); break;
    default: static_cast<float*>(base)[i] = v; break;
  }
}

// act(x) for the activations of kernels.h (kNoActivation and unknown values: x itself).
__device__ __forceinline__ float activate(int act, float x) {
  switch (act) {
    case 0: {  // gelu_new
      constexpr float k = 0.7978845608028654f;  // sqrt(2 / pi)
      return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
    }
    case 1: return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
    case 2: return 0.5f * x * (1.0f + tanhf(x * 0.7978845608f * (1.0f + 0.044715f * x * x)));
    case 3: return x > 0.0f ? x : 0.0f;
    default: return x;
  }
}

// One stored element as fp32, by its C++ type.
__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

// The raw bits of a stored f16/bf16 element, which construct it.
template <typename T>
struct RawElement;
template <>
struct RawElement<__half> {
  using type = __half_raw;
};
template <>
struct RawElement<__nv_bfloat16> {
  using type = __nv_bfloat16_raw;
};

// The 8 f16/bf16 elements of one 16-byte load as fp32 (through their bits: no type punning).
template <typename T>
__device__ __forceinline__ void unpack8(const uint4& packed, float (&out)[8]) {
  uint16_t bits[8];
  memcpy(bits, &packed, sizeof(bits));
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    typename RawElement<T>::type raw;
    raw.x = bits[j];
    out[j] = to_float(T(raw));
  }
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// scratch: 32 floats of shared memory, free again on return.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < n_warps; ++w) total += scratch[w];
  __syncthreads();
  return total;
}

// launch(std::integral_constant<int, m>{}) for a row count m from 1 to kFewRowsMax (larger: as
// kFewRowsMax): the few-rows kernels' template over their rows, chosen at run time.
template <typename Launch>
cudaError_t for_row_count(int64_t m, Launch&& launch) {
  switch (m) {
    case 1: return launch(std::integral_constant<int, 1>{});
    case 2: return launch(std::integral_constant<int, 2>{});
    case 3: return launch(std::integral_constant<int, 3>{});
    case 4: return launch(std::integral_constant<int, 4>{});
    case 5: return launch(std::integral_constant<int, 5>{});
    case 6: return launch(std::integral_constant<int, 6>{});
    case 7: return launch(std::integral_constant<int, 7>{});
    default: return launch(std::integral_constant<int, kFewRowsMax>{});
  }
}
static_assert(kFewRowsMax == 8, "for_row_count lists the row counts");

// Blocks for n elements at `threads` per block, capped so the grid stays small (grid-stride loops).
inline unsigned grid_for(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 65536 ? (blocks > 0 ? blocks : 1) : 65536);
}

}  // namespace kvmesh
