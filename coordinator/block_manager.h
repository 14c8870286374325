// BlockManager: page bookkeeping for the device tier (free list, reference counts, block tables).
// It allocates no memory and copies no bytes; workers own the pages.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"

namespace kvmesh {

class BlockManager {
 public:
  BlockManager(int32_t n_pages, int32_t block_size);

  int32_t block_size() const { return block_size_; }
  int32_t n_pages() const { return static_cast<int32_t>(ref_counts_.size()); }
  int32_t n_free() const { return static_cast<int32_t>(free_.size()); }
  int32_t n_used() const { return n_pages() - n_free(); }

  // Pages a table must hold for n_tokens tokens.
  int32_t pages_for(int64_t n_tokens) const {
    return static_cast<int32_t>((n_tokens + block_size_ - 1) / block_size_);
  }
  // Pages to add to `table` so it holds n_tokens tokens.
  int32_t pages_missing(const std::vector<int32_t>& table, int64_t n_tokens) const;
  bool can_grow(const std::vector<int32_t>& table, int64_t n_tokens) const {
    return pages_missing(table, n_tokens) <= n_free();
  }
  // Appends pages to `table` until it holds n_tokens tokens. Fails, leaving the table as it was,
  // when too few pages are free.
  Status grow(std::vector<int32_t>* table, int64_t n_tokens);
  // Drops the table's references; pages whose count reaches 0 return to the free list.
  void release(std::vector<int32_t>* table);

 private:
  int32_t block_size_;
  std::vector<int32_t> ref_counts_;  // per page
  std::vector<int32_t> free_;        // stack of free page ids
};

}  // namespace kvmesh
