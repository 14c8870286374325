// BlockManager: page bookkeeping for the device tier (free list, reference counts, block tables).
#include "coordinator/block_manager.h"

#include <string>

namespace kvmesh {

BlockManager::BlockManager(int32_t n_pages, int32_t block_size)
    : block_size_(block_size), ref_counts_(static_cast<size_t>(n_pages), 0) {
  KVMESH_CHECK(n_pages > 0 && block_size > 0);
  free_.reserve(static_cast<size_t>(n_pages));
  for (int32_t p = n_pages - 1; p >= 0; --p) free_.push_back(p);  // lowest id handed out first
}

int32_t BlockManager::pages_missing(const std::vector<int32_t>& table, int64_t n_tokens) const {
  const int32_t need = pages_for(n_tokens) - static_cast<int32_t>(table.size());
  return need > 0 ? need : 0;
}

Status BlockManager::grow(std::vector<int32_t>* table, int64_t n_tokens) {
  const int32_t need = pages_missing(*table, n_tokens);
  if (need > n_free()) {
    return resource_exhausted("need " + std::to_string(need) + " free pages, have " +
                              std::to_string(n_free()));
  }
  for (int32_t i = 0; i < need; ++i) {
    const int32_t page = free_.back();
    free_.pop_back();
    KVMESH_CHECK(ref_counts_[page] == 0);
    ref_counts_[page] = 1;
    table->push_back(page);
  }
  return Status::ok();
}

void BlockManager::release(std::vector<int32_t>* table) {
  for (int32_t page : *table) {
    KVMESH_CHECK(page >= 0 && page < n_pages() && ref_counts_[page] > 0);
    if (--ref_counts_[page] == 0) free_.push_back(page);
  }
  table->clear();
}

}  // namespace kvmesh
