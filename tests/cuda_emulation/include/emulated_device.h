// The emulated CUDA device model, force-included into the CUDA backend's sources when they are
// built by the host compiler for the emulated GPU tests: CUDA's qualifiers as plain C++, __shared__
// as one static per kernel (blocks run one at a time), threadIdx and friends, barriers, shuffles
// and the device intrinsics the kernels use, and the launch that rewrite_launches.pl puts in place
// of `kernel<<<...>>>(args)`.
#pragma once

#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>

// The backend's sources test this to take the emulated paths (launch.cuh, elem.cuh).
#define KVMESH_EMULATED_DEVICE 1

#undef __global__
#define __global__
#undef __device__
#define __device__
#undef __host__
#define __host__
#undef __shared__
#define __shared__ static
#undef __forceinline__
#define __forceinline__ inline
#undef __launch_bounds__
#define __launch_bounds__(...)
#undef __restrict__
#define __restrict__

namespace cuemu {

extern uint3 t_idx, b_idx;
extern dim3 b_dim, g_dim;

[[noreturn]] void fail(const char* what);
// The whole number in environment variable `name`, from 0 to max; `fallback` when unset or empty.
// Anything else fails, naming the variable.
long env_count(const char* name, long fallback, long max);
// Fails unless [p, p + n) lies inside one device allocation.
void check_device_range(const void* p, size_t n, const char* what);
// Fills a __shared__ variable with all-ones bytes when the running block first reaches it
// (rewrite_launches.pl adds the call after each declaration).
void poison_shared(void* p, size_t n);
void syncthreads();
void warp_barrier();
// Per-thread 8-byte exchange slots for shuffles.
void* shuffle_slot(unsigned linear_thread);
unsigned linear_tid();
// Fails unless the running block has `threads` threads (a CUB primitive's template size).
inline void expect_block_threads(unsigned threads, const char* primitive) {
  if (b_dim.x * b_dim.y * b_dim.z != threads)
    fail((std::string(primitive) + ": the block's size differs from the primitive's template").c_str());
}

struct Cfg {
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
  bool overlap;  // launched to overlap the kernel before it (KernelStream::overlap)
  Cfg(dim3 g, dim3 b, size_t s = 0, cudaStream_t st = nullptr, bool o = false)
      : grid(g), block(b), smem(s), stream(st), overlap(o) {}
};
// A kernel thread's wait for the kernel before it (elem.cuh's wait_for_previous_kernel). Kernels
// here run one after another, so it has nothing to wait for; a thread of a kernel launched to
// overlap that ends without having called it fails, as on a GPU it could have read too early.
void grid_dependency_wait();
// body (one kernel thread) followed by that check (launch_closure, for a kernel launched to overlap).
std::function<void()> checking_overlap_waits(std::function<void()> body);

struct Cfg;
void run_kernel(const Cfg& cfg, const std::function<void()>& body);
// Runs (or, while the stream captures, records) body once per thread of every block.
void launch_closure(const Cfg& cfg, std::function<void()> body);

template <typename... P, typename... A>
void launch(const Cfg& cfg, void (*kernel)(P...), A&&... args) {
  auto params = std::tuple<std::decay_t<P>...>(std::forward<A>(args)...);
  launch_closure(cfg, [kernel, params]() { std::apply(kernel, params); });
}

template <typename T>
T shfl_xor(T v, int lane_mask) {
  static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
  const unsigned me = linear_tid();
  std::memcpy(shuffle_slot(me), &v, sizeof(T));
  warp_barrier();
  const unsigned lane = me % 32, base = me - lane;
  T out;
  std::memcpy(&out, shuffle_slot(base + ((lane ^ static_cast<unsigned>(lane_mask)) % 32)), sizeof(T));
  warp_barrier();
  return out;
}

}  // namespace cuemu

#define threadIdx ::cuemu::t_idx
#define blockIdx ::cuemu::b_idx
#define blockDim ::cuemu::b_dim
#define gridDim ::cuemu::g_dim

inline void __syncthreads() { ::cuemu::syncthreads(); }
template <typename T>
inline T __shfl_xor_sync(unsigned, T v, int lane_mask, int = 32) {
  return ::cuemu::shfl_xor(v, lane_mask);
}
inline double __dmul_rn(double a, double b) { volatile double r = a * b; return r; }
inline double __dadd_rn(double a, double b) { volatile double r = a + b; return r; }
inline double __dsub_rn(double a, double b) { volatile double r = a - b; return r; }
inline double __ddiv_rn(double a, double b) { volatile double r = a / b; return r; }
inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
inline float __fsub_rn(float a, float b) { volatile float r = a - b; return r; }
inline float __fdiv_rn(float a, float b) { volatile float r = a / b; return r; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
// Blocks run one after another, their threads fibers on one host thread: plain host atomics.
inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
template <typename T>
inline T __ldcg(const T* p) { return *p; }
inline void __nanosleep(unsigned ns) { std::this_thread::sleep_for(std::chrono::nanoseconds(ns)); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
using std::isnan;
