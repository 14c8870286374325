// PageMemory: where the KV tiers' bytes live and how whole pages move between the device pool and
// the host pool. Host memory on the CPU backend; device memory, pinned host memory and a copy stream
// ordered with the compute stream by events on CUDA.
#pragma once

#include <cstddef>
#include <memory>

#include "common/status.h"
#include "worker/buffer.h"

namespace kvmesh {

class PageMemory {
 public:
  virtual ~PageMemory() = default;
  // The device pool and the host pool, zeroed. Host pool bytes are host-addressable.
  virtual Result<Buffer> alloc_device(size_t bytes) = 0;
  virtual Result<Buffer> alloc_host(size_t bytes) = 0;
  // Copies between the pools run in the order they are issued, each after every op already issued
  // on the device pool, and may run in the background.
  // One page from the device pool to the host pool: the host may read (or write) the host bytes
  // after wait_copies(); ops issued after the next fence() may overwrite the device page.
  virtual Status copy_to_host(void* host_dst, const void* device_src, size_t bytes) = 0;
  // One page from the host pool to the device pool: ops issued after the next fence() see it, and
  // the host must not change the source before wait_copies().
  virtual Status copy_to_device(void* device_dst, const void* host_src, size_t bytes) = 0;
  // One page to another inside the device pool, ordered with the ops.
  virtual Status copy_in_device(void* device_dst, const void* device_src, size_t bytes) = 0;
  // Device bytes still free for the pool (-1: no device limit, host memory).
  virtual int64_t free_device_bytes() { return -1; }
  // Orders every copy issued so far before the ops issued after this call (no host wait).
  virtual Status fence() = 0;
  // Waits (host) until every copy issued so far has finished.
  virtual Status wait_copies() = 0;
  // Device time of the copies between the pools that finished since the last call, in seconds,
  // to the host and to the device: what the moves cost where they run in the background (timing
  // their issue on the host would count next to nothing). None where copies end on return.
  struct CopySeconds {
    double to_host = 0, to_device = 0;
  };
  virtual CopySeconds take_copy_seconds() { return {}; }
};

// Plain host memory (calloc) and memcpy: the CPU backend's tiers.
std::unique_ptr<PageMemory> make_host_page_memory();

}  // namespace kvmesh
