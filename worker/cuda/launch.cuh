// launch_kernel: how every launcher of kernels.h queues its kernel on a KernelStream, plainly or, with
// overlap, as a programmatic dependent launch (the kernel's blocks may start while the kernel
// before it still runs; elem.cuh's wait_for_previous_kernel holds them until it has finished).
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "worker/cuda/kernels.h"

namespace kvmesh {

template <typename... Params, typename... Args>
cudaError_t launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, KernelStream on, Args&&... args) {
#if defined(KVMESH_EMULATED_DEVICE)
  ::cuemu::launch(::cuemu::Cfg(grid, block, 0, on.stream, on.overlap), kernel, std::forward<Args>(args)...);
  return cudaGetLastError();
#else
  cudaLaunchAttribute overlap;
  overlap.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  overlap.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = 0;
  config.stream = on.stream;
  config.attrs = on.overlap ? &overlap : nullptr;
  config.numAttrs = on.overlap ? 1 : 0;
  const cudaError_t launched = cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
  const cudaError_t last = cudaGetLastError();  // clears the launch's error, as after kernel<<<...>>>
  return launched != cudaSuccess ? launched : last;
#endif
}

}  // namespace kvmesh
