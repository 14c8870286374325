// The hold kernel of op timing (op_timeline.h): one thread that sleeps until about ns nanoseconds
// of device time have passed, keeping its stream busy meanwhile.
#include <cstdint>

#include "worker/cuda/op_timeline.h"

namespace kvmesh {
namespace {

__global__ void device_hold_kernel(int64_t ns) {
#ifdef __CUDA_ARCH__
  uint64_t start = 0, now = 0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do {
    __nanosleep(1000);
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  } while (static_cast<int64_t>(now - start) < ns);
#else
  __nanosleep(static_cast<unsigned>(ns < 4000000000 ? ns : 4000000000));  // the emulated device: one sleep
#endif
}

}  // namespace

cudaError_t launch_device_hold(int64_t ns, cudaStream_t stream) {
  if (ns <= 0) return cudaSuccess;
  device_hold_kernel<<<1, 1, 0, stream>>>(ns);
  return cudaGetLastError();
}

}  // namespace kvmesh
