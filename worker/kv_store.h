// KvStore: the bytes of the KV cache pages a worker owns: the device pool (RAM on the CPU backend),
// the host pool (page-sized RAM slots; pinned on CUDA, moves on a copy stream) and the disk tier, and the page moves
// between them that CacheOps ask for. Pages are one contiguous block in every tier (KvPoolView).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "common/config.h"
#include "common/protocol.h"
#include "common/status.h"
#include "worker/backend.h"
#include "worker/buffer.h"
#include "worker/disk_store.h"
#include "worker/page_memory.h"

namespace kvmesh {

// Elements of one page for n_layers layers and n_heads heads:
// [n_layers, 2, block_size, n_heads, head_dim]
int64_t kv_page_elems(int n_layers, int block_size, int n_heads, int head_dim);

class KvStore {
 public:
  // Bytes of one page of n_layers layers and n_heads heads in cache.kv_dtype (i8: + scales).
  static int64_t page_bytes_for(const CacheConfig& cache, int n_layers, int n_heads, int head_dim);
  // Pages the device budget holds for this rank's layers and heads (an error when none, or when
  // the KV dtype or block size is not supported).
  static Result<int32_t> budget_pages(const CacheConfig& cache, int n_layers, int n_heads,
                                      int head_dim);
  // Device pages a device with free_bytes free (once the weights are placed) holds: the share
  // cache.device_fraction of it when set, else budget_pages capped at nine tenths of it (the rest
  // kept for the ops' scratch).
  static int64_t device_pages_in_free_memory(const CacheConfig& cache, int64_t free_bytes, int64_t page_bytes,
                                             int32_t budget_pages);
  // Host slots the host budget holds (0: no host tier).
  static int32_t host_budget_slots(const CacheConfig& cache, int64_t page_bytes);
  // Allocates n_pages device pages and n_host_slots host slots (page ids are global, so every
  // rank allocates the same counts) from `memory` (the backend's; null: plain host memory, which
  // the store then owns).
  static Result<std::unique_ptr<KvStore>> create(const CacheConfig& cache, int n_layers,
                                                 int n_heads, int head_dim, int32_t n_pages,
                                                 int32_t n_host_slots = 0,
                                                 PageMemory* memory = nullptr);
  // Adds the disk tier (its page size must be page_bytes()).
  void attach_disk(std::unique_ptr<DiskStore> disk);

  KvPoolView device_pool() { return pool_; }
  KvPoolView device_pool_view() const { return pool_; }
  KvPoolView host_pool_view() const { return host_; }
  int32_t n_device_pages() const { return pool_.n_pages; }
  int32_t n_host_slots() const { return host_.n_pages; }
  int32_t n_disk_slots() const { return disk_ ? disk_->n_slots() : 0; }
  DiskStore* disk() const { return disk_.get(); }
  size_t page_bytes() const;

  // Applies one swap_out, swap_in, disk_store or disk_load (ids already validated; copies go
  // through the backend). An error is an expected outcome (a disk page that fails its checks, an
  // I/O error, a host slot that holds no page): the caller counts it and goes on.
  Status apply(const CacheOp& op);
  // Orders the page moves issued so far before the compute issued after (device copies may run in
  // the background until then).
  Status fence() { return memory_->fence(); }
  // Device time of the page moves that ran in the background and finished since the last call.
  PageMemory::CopySeconds take_copy_seconds() { return memory_->take_copy_seconds(); }
  // Drops what a failed op left behind (it failed on some rank): a disk_load's host slot holds no
  // page any more, a disk_store's slot is invalidated on disk.
  void forget(const CacheOp& op);
  // Whether a host slot holds a page (written by swap_out or a verified disk_load).
  bool host_slot_valid(int32_t slot) const { return host_valid_[static_cast<size_t>(slot)] != 0; }

 private:
  KvStore() = default;

  std::unique_ptr<PageMemory> owned_memory_;  // when create() got none
  PageMemory* memory_ = nullptr;
  Buffer device_bytes_;  // [n_pages, page_bytes]
  Buffer host_bytes_;    // [n_host_slots, page_bytes]
  KvPoolView pool_;
  KvPoolView host_;
  std::vector<uint8_t> host_valid_;  // [n_host_slots]
  std::unique_ptr<DiskStore> disk_;
};

}  // namespace kvmesh
