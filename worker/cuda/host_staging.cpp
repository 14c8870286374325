// HostStaging: a ring of pinned upload buffers guarded by events.
#include "worker/cuda/host_staging.h"

#include <cstring>

#include "worker/cuda/cuda_check.h"

namespace kvmesh {

HostStaging::~HostStaging() {
  for (Slot& slot : slots_) {
    if (slot.done != nullptr) {
      (void)cudaEventSynchronize(slot.done);
      (void)cudaEventDestroy(slot.done);
    }
    if (slot.pinned != nullptr) (void)cudaFreeHost(slot.pinned);
  }
}

Status HostStaging::upload(void* device_dst, const void* host_src, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return Status::ok();
  Slot& slot = slots_[next_];
  next_ = (next_ + 1) % slots_.size();
  if (slot.done == nullptr)
    KVMESH_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&slot.done, cudaEventDisableTiming),
                                "cudaEventCreate (upload staging)");
  if (slot.in_flight) {
    KVMESH_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(slot.done), "waiting for an earlier upload");
    slot.in_flight = false;
  }
  if (slot.capacity < bytes) {
    if (slot.pinned != nullptr) KVMESH_CUDA_RETURN_IF_ERROR(cudaFreeHost(slot.pinned), "cudaFreeHost");
    slot.pinned = nullptr;
    slot.capacity = 0;
    const size_t grown = bytes < 4096 ? 4096 : bytes * 2;
    KVMESH_CUDA_RETURN_IF_ERROR(cudaMallocHost(&slot.pinned, grown), "cudaMallocHost (upload staging)");
    slot.capacity = grown;
  }
  std::memcpy(slot.pinned, host_src, bytes);
  KVMESH_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(device_dst, slot.pinned, bytes, cudaMemcpyHostToDevice, stream), "upload");
  if (const cudaError_t recorded = cudaEventRecord(slot.done, stream); recorded != cudaSuccess) {
    (void)cudaStreamSynchronize(stream);  // no event to wait on later: the copy must end before the slot is reused
    return cuda_status(recorded, "cudaEventRecord (upload)");
  }
  slot.in_flight = true;
  return Status::ok();
}

}  // namespace kvmesh
