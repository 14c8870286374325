// KvStore: the bytes of the KV cache pages a worker owns (device pool; host and disk tiers later).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "common/config.h"
#include "common/status.h"
#include "worker/backend.h"

namespace kvmesh {

// Elements of one page for n_layers layers and n_heads heads:
// [n_layers, 2, block_size, n_heads, head_dim]
int64_t kv_page_elems(int n_layers, int block_size, int n_heads, int head_dim);

class KvStore {
 public:
  // Pages the device budget holds for this rank's layers and heads (an error when none).
  static Result<int32_t> budget_pages(const CacheConfig& cache, int n_layers, int n_heads,
                                      int head_dim);
  // Allocates n_pages pages (page ids are global, so every rank allocates the same count).
  static Result<std::unique_ptr<KvStore>> create(const CacheConfig& cache, int n_layers,
                                                 int n_heads, int head_dim, int32_t n_pages);

  KvPoolView device_pool() { return pool_; }
  KvPoolView device_pool_view() const { return pool_; }
  int32_t n_device_pages() const { return pool_.n_pages; }
  size_t page_bytes() const;

 private:
  KvStore() = default;
  std::vector<float> device_;  // [n_pages, n_layers, 2, block_size, n_heads, head_dim]
  KvPoolView pool_;
};

}  // namespace kvmesh
