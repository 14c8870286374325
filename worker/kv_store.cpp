// KvStore: the bytes of the KV cache pages a worker owns (device pool; host and disk tiers later).
#include "worker/kv_store.h"

#include <memory>
#include <string>

namespace kvmesh {

int64_t kv_page_elems(int n_layers, int block_size, int n_heads, int head_dim) {
  return static_cast<int64_t>(n_layers) * 2 * block_size * n_heads * head_dim;
}

Result<int32_t> KvStore::budget_pages(const CacheConfig& cache, int n_layers, int n_heads,
                                      int head_dim) {
  if (cache.kv_dtype != DType::f32) {
    return invalid_argument(std::string("KV dtype ") + dtype_name(cache.kv_dtype) +
                            " is not supported by the CPU backend yet (use f32)");
  }
  if (cache.block_size < 1 || cache.block_size > 1024) {
    return invalid_argument("block size " + std::to_string(cache.block_size) +
                            " is outside [1, 1024]");
  }
  const int64_t page_bytes =
      kv_page_elems(n_layers, cache.block_size, n_heads, head_dim) * static_cast<int64_t>(sizeof(float));
  const int64_t n_pages = cache.device_bytes / page_bytes;
  if (n_pages < 1) {
    return invalid_argument("KV device budget of " + std::to_string(cache.device_bytes) +
                            " bytes holds no page (one page is " + std::to_string(page_bytes) +
                            " bytes)");
  }
  return static_cast<int32_t>(std::min<int64_t>(n_pages, 1 << 30));
}

Result<std::unique_ptr<KvStore>> KvStore::create(const CacheConfig& cache, int n_layers,
                                                 int n_heads, int head_dim, int32_t n_pages) {
  const int64_t elems = kv_page_elems(n_layers, cache.block_size, n_heads, head_dim);
  auto store = std::unique_ptr<KvStore>(new KvStore());
  try {
    store->device_.assign(static_cast<size_t>(n_pages * elems), 0.0f);
  } catch (const std::bad_alloc&) {
    return resource_exhausted("cannot allocate " + std::to_string(n_pages) + " KV pages");
  }
  store->pool_ = KvPoolView{store->device_.data(), DType::f32, n_pages, n_layers,
                            cache.block_size, n_heads, head_dim};
  return store;
}

size_t KvStore::page_bytes() const {
  return static_cast<size_t>(pool_.page_elems()) * dtype_size(pool_.dtype);
}

}  // namespace kvmesh
