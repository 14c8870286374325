// The host PageMemory: pools from alloc_host_memory (committed lazily) and memcpy page moves.
#include "worker/page_memory.h"

#include <cstring>

#include "worker/host_memory.h"

namespace kvmesh {
namespace {

class HostPageMemory final : public PageMemory {
 public:
  Result<Buffer> alloc_device(size_t bytes) override { return alloc_host_memory(bytes, "KV pool"); }
  Result<Buffer> alloc_host(size_t bytes) override {
    return alloc_host_memory(bytes, "host KV pool");
  }
  Status copy_to_host(void* host_dst, const void* device_src, size_t bytes) override {
    std::memcpy(host_dst, device_src, bytes);
    return Status::ok();
  }
  Status copy_to_device(void* device_dst, const void* host_src, size_t bytes) override {
    std::memcpy(device_dst, host_src, bytes);
    return Status::ok();
  }
  Status copy_in_device(void* device_dst, const void* device_src, size_t bytes) override {
    if (device_dst != device_src) std::memcpy(device_dst, device_src, bytes);
    return Status::ok();
  }
  Status fence() override { return Status::ok(); }
  Status wait_copies() override { return Status::ok(); }
};

}  // namespace

std::unique_ptr<PageMemory> make_host_page_memory() { return std::make_unique<HostPageMemory>(); }

}  // namespace kvmesh
