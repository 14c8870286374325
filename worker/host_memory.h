// Host memory blocks of the CPU backend (weights, activations, KV pool) and of host KV tiers:
// zero-filled, committed as first touched, large blocks on transparent huge pages (docs/cpu.md).
#pragma once

#include <cstddef>
#include <string_view>

#include "common/status.h"
#include "worker/buffer.h"

namespace kvmesh {

constexpr size_t kHugePageBytes = size_t(2) << 20;

// `what` names the block in the error when the memory cannot be had.
Result<Buffer> alloc_host_memory(size_t bytes, std::string_view what);

// Whether a block of `bytes` from alloc_host_memory is advised for huge pages.
bool host_memory_uses_huge_pages(size_t bytes);

}  // namespace kvmesh
