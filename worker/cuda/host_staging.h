// HostStaging: uploads of small host arrays (tokens, slots, block tables) through a ring of pinned
// buffers, so a copy never waits for the device and its source may change as soon as it returns.
// A slot is reused only after its last copy finished (an event), eight uploads later.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <cstddef>

#include "common/status.h"

namespace kvmesh {

class HostStaging {
 public:
  HostStaging() = default;
  ~HostStaging();
  HostStaging(const HostStaging&) = delete;
  HostStaging& operator=(const HostStaging&) = delete;

  // Copies bytes from host src to device dst on stream (ordered with the stream's other work).
  Status upload(void* device_dst, const void* host_src, size_t bytes, cudaStream_t stream);

 private:
  struct Slot {
    void* pinned = nullptr;
    size_t capacity = 0;
    cudaEvent_t done = nullptr;
    bool in_flight = false;
  };
  std::array<Slot, 8> slots_{};
  size_t next_ = 0;
};

}  // namespace kvmesh
