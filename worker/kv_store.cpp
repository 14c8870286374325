// KvStore: the device and host page pools (zeroed, from the backend's PageMemory), the disk tier,
// and the page moves between tiers: one-page copies, disk writes and verified disk reads.
#include "worker/kv_store.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>

#include "worker/kv_quant.h"

namespace kvmesh {

int64_t kv_page_elems(int n_layers, int block_size, int n_heads, int head_dim) {
  return static_cast<int64_t>(n_layers) * 2 * block_size * n_heads * head_dim;
}

int64_t KvStore::page_bytes_for(const CacheConfig& cache, int n_layers, int n_heads, int head_dim) {
  return kv_page_bytes(cache.kv_dtype, n_layers, cache.block_size, n_heads, head_dim);
}

Result<int32_t> KvStore::budget_pages(const CacheConfig& cache, int n_layers, int n_heads,
                                      int head_dim) {
  if (!kv_dtype_supported(cache.kv_dtype)) {
    return invalid_argument(std::string("KV dtype ") + dtype_name(cache.kv_dtype) +
                            " is not supported (use f32, bf16, f16 or i8)");
  }
  if (cache.block_size < 1 || cache.block_size > 1024) {
    return invalid_argument("block size " + std::to_string(cache.block_size) +
                            " is outside [1, 1024]");
  }
  const int64_t page_bytes = page_bytes_for(cache, n_layers, n_heads, head_dim);
  const int64_t n_pages = page_bytes > 0 ? cache.device_bytes / page_bytes : 0;
  if (n_pages < 1) {
    return invalid_argument("KV device budget of " + std::to_string(cache.device_bytes) +
                            " bytes holds no page (one page is " + std::to_string(page_bytes) +
                            " bytes)");
  }
  return static_cast<int32_t>(std::min<int64_t>(n_pages, 1 << 30));
}

int64_t KvStore::device_pages_in_free_memory(const CacheConfig& cache, int64_t free_bytes, int64_t page_bytes,
                                             int32_t budget_pages) {
  page_bytes = std::max<int64_t>(page_bytes, 1);
  if (cache.device_fraction > 0.0)
    return std::min<int64_t>(static_cast<int64_t>(static_cast<double>(free_bytes) * cache.device_fraction) / page_bytes,
                             1 << 30);
  return std::min<int64_t>(budget_pages, free_bytes / 10 * 9 / page_bytes);
}

int32_t KvStore::host_budget_slots(const CacheConfig& cache, int64_t page_bytes) {
  if (cache.host_bytes <= 0 || page_bytes <= 0) return 0;
  return static_cast<int32_t>(std::min<int64_t>(cache.host_bytes / page_bytes, 1 << 30));
}

Result<std::unique_ptr<KvStore>> KvStore::create(const CacheConfig& cache, int n_layers,
                                                 int n_heads, int head_dim, int32_t n_pages,
                                                 int32_t n_host_slots, PageMemory* memory) {
  if (!kv_dtype_supported(cache.kv_dtype) || n_pages < 0 || n_host_slots < 0)
    return invalid_argument("bad KV pool geometry");
  auto store = std::unique_ptr<KvStore>(new KvStore());
  if (memory == nullptr) {
    store->owned_memory_ = make_host_page_memory();
    memory = store->owned_memory_.get();
  }
  store->memory_ = memory;
  store->pool_ = KvPoolView{nullptr, cache.kv_dtype, n_pages, n_layers, cache.block_size,
                            n_heads, head_dim};
  store->host_ = store->pool_;
  store->host_.n_pages = n_host_slots;
  const auto page_bytes = static_cast<size_t>(store->pool_.page_bytes());
  auto device = memory->alloc_device(static_cast<size_t>(std::max(n_pages, 1)) * page_bytes);
  if (!device.is_ok())
    return resource_exhausted("cannot allocate " + std::to_string(n_pages) + " KV pages: " +
                              device.status().message());
  store->device_bytes_ = std::move(device).value();
  if (n_host_slots > 0) {
    auto host = memory->alloc_host(static_cast<size_t>(n_host_slots) * page_bytes);
    if (!host.is_ok())
      return resource_exhausted("cannot allocate " + std::to_string(n_host_slots) +
                                " host KV slots: " + host.status().message());
    store->host_bytes_ = std::move(host).value();
  }
  store->pool_.data = store->device_bytes_.data();
  store->host_.data = store->host_bytes_.data();
  store->host_valid_.assign(static_cast<size_t>(n_host_slots), 0);
  return store;
}

void KvStore::attach_disk(std::unique_ptr<DiskStore> disk) {
  KVMESH_CHECK(!disk || disk->page_bytes() == static_cast<int64_t>(page_bytes()));
  disk_ = std::move(disk);
}

size_t KvStore::page_bytes() const { return static_cast<size_t>(pool_.page_bytes()); }

Status KvStore::apply(const CacheOp& op) {
  const size_t n = page_bytes();
  switch (op.kind) {
    case CacheOpKind::copy:
      if (op.src == op.dst) return Status::ok();
      KVMESH_RETURN_IF_ERROR(memory_->fence());
      return memory_->copy_in_device(pool_.page_ptr(op.dst), pool_.page_ptr(op.src), n);
    case CacheOpKind::swap_out:  // after a pending swap_in of the slot: copies run in order
      KVMESH_RETURN_IF_ERROR(memory_->copy_to_host(host_.page_ptr(op.dst), pool_.page_ptr(op.src), n));
      host_valid_[static_cast<size_t>(op.dst)] = 1;
      return Status::ok();
    case CacheOpKind::swap_in:
      if (!host_slot_valid(op.src)) return data_loss("host slot " + std::to_string(op.src) + " holds no page");
      return memory_->copy_to_device(pool_.page_ptr(op.dst), host_.page_ptr(op.src), n);
    case CacheOpKind::disk_store:
      if (!host_slot_valid(op.src)) return data_loss("host slot " + std::to_string(op.src) + " holds no page");
      if (!disk_) return unavailable("no disk tier");
      KVMESH_RETURN_IF_ERROR(memory_->wait_copies());  // a swap_out may still be writing the slot
      return disk_->store(op.dst, op.page_hash, op.n_tokens, host_.page_ptr(op.src));
    case CacheOpKind::disk_load: {
      KVMESH_RETURN_IF_ERROR(memory_->wait_copies());  // a swap_in or swap_out may still use the slot
      host_valid_[static_cast<size_t>(op.dst)] = 0;  // until the page is verified
      if (!disk_) return unavailable("no disk tier");
      Status s = disk_->load(op.src, op.page_hash, op.n_tokens, host_.page_ptr(op.dst));
      if (s.is_ok()) host_valid_[static_cast<size_t>(op.dst)] = 1;
      return s;
    }
  }
  return invalid_argument("unknown cache op kind");
}

void KvStore::forget(const CacheOp& op) {
  if (op.kind == CacheOpKind::disk_load) host_valid_[static_cast<size_t>(op.dst)] = 0;
  if (op.kind == CacheOpKind::disk_store && disk_) disk_->invalidate(op.dst);
}

}  // namespace kvmesh
