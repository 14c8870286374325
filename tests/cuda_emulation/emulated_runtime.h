// What the emulated runtime offers the emulated libraries beside the CUDA API: host work in stream
// order (queued on the stream until something waits on it, or recorded while the stream captures).
#pragma once

#include <cuda_runtime.h>

#include <functional>

namespace cuemu {

void run_on_stream(cudaStream_t stream, std::function<void()> work);

}  // namespace cuemu
