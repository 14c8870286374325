// The CUDA PageMemory: the device pool in device memory, the host pool in pinned memory, page moves
// on a copy stream of their own, ordered with the compute stream by events.
#pragma once

#include <cuda_runtime.h>

#include <memory>

#include "worker/page_memory.h"

namespace kvmesh {

// compute: the stream the backend's ops run on. Errors: the copy stream or events failed.
Result<std::unique_ptr<PageMemory>> make_device_page_memory(int device, cudaStream_t compute);

}  // namespace kvmesh
