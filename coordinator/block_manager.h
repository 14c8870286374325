// BlockManager: all KV page bookkeeping: block tables and reference counts of device pages, the
// prefix index (page hash -> where the page's bytes are), LRU lists of cached pages per tier, and
// the page moves that follow (CacheOps). It allocates no memory and copies no bytes.
#pragma once

#include <cstdint>
#include <list>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/protocol.h"
#include "common/status.h"
#include "common/step_executor.h"

namespace kvmesh {

enum class Tier : uint8_t { device = 0, host = 1, disk = 2 };
const char* tier_name(Tier tier);

// hash of a full page: its parent page's hash, its token ids and the tenant's cache salt.
uint64_t page_hash(uint64_t parent_hash, const int32_t* tokens, int32_t n_tokens, const std::string& salt);

struct TierCounters {
  int64_t hits[3] = {0, 0, 0};          // pages reused from device / host / disk
  int64_t moved_out[3] = {0, 0, 0};     // device->host, host->disk (index = destination tier)
  int64_t moved_in[3] = {0, 0, 0};      // host->device, disk->host (index = destination tier)
  int64_t dropped = 0;                  // cached pages evicted from the last tier
  int64_t failed_loads = 0;             // disk pages whose header or checksum did not match
  int64_t failed_stores = 0;            // disk writes that failed (ENOSPC, I/O)
  int64_t copies = 0;                   // copy-on-write copies of shared partial pages
  int64_t failed_moves = 0;             // swap-ins, swap-outs and copies a worker reported failed
};

class BlockManager {
 public:
  BlockManager(const TierCapacity& capacity, int32_t block_size);
  BlockManager(const BlockManager&) = delete;
  BlockManager& operator=(const BlockManager&) = delete;

  int32_t block_size() const { return block_size_; }
  int32_t n_pages() const { return static_cast<int32_t>(device_.size()); }
  // Device pages that can be handed out now (free, or cached with no reference).
  int32_t n_free() const { return static_cast<int32_t>(free_.size() + device_lru_.size()); }
  int32_t n_used() const { return n_pages() - n_free(); }
  int32_t n_cached(Tier tier) const;  // pages with a hash in the tier's index
  const TierCounters& counters() const { return counters_; }

  int32_t pages_for(int64_t n_tokens) const {
    return static_cast<int32_t>((n_tokens + block_size_ - 1) / block_size_);
  }
  int32_t pages_missing(const std::vector<int32_t>& table, int64_t n_tokens) const;
  bool can_grow(const std::vector<int32_t>& table, int64_t n_tokens) const {
    return pages_missing(table, n_tokens) <= n_free();
  }
  // Appends device pages until the table holds n_tokens tokens, evicting cached pages (to host,
  // disk, or nowhere) as needed. Fails, leaving everything as it was, when too few pages can be had.
  Status grow(std::vector<int32_t>* table, int64_t n_tokens);
  // Drops the table's references. Pages with a hash stay cached (LRU); the rest are freed.
  void release(std::vector<int32_t>* table);

  // Copy-on-write sharing between the members of a sequence group.
  // A new table sharing every page of `table` (each page gains a reference).
  std::vector<int32_t> fork(const std::vector<int32_t>& table);
  // Whether writing from token `first_token` on lands in a page (the partly filled last one) that
  // another table shares.
  bool needs_copy(const std::vector<int32_t>& table, int64_t first_token) const;
  // Gives the table its own copy of that page (a CacheOp::copy into a new page); the other
  // tables keep the original. Fails, changing nothing, when no page can be had.
  Status make_writable(std::vector<int32_t>* table, int64_t first_token);
  // References held on a device page (test hook and metrics).
  int32_t ref_count(int32_t page) const { return device_[page].ref; }
  int32_t n_shared() const { return n_shared_; }  // device pages with more than one reference

  // Records that a table's page now holds a full page of tokens with this hash (prefix reuse).
  void register_full_page(int32_t page, uint64_t hash);

  // Where the longest run of leading hashes is cached: one location per matched page.
  struct Hit {
    Tier tier;
    int32_t id;
  };
  std::vector<Hit> match(const std::vector<uint64_t>& hashes) const;
  // Brings disk hits up to host slots (disk_load ops); they can be swapped in from the next step,
  // when the loads are known to have succeeded. Returns false when no host slot could be had.
  bool stage_from_disk(const std::vector<uint64_t>& hashes);
  // Takes the matched pages into `table`: device hits gain a reference, host hits are swapped in
  // to new device pages. Returns how many leading pages were taken (stops at the first page that
  // is not on device or host, or when device pages run out).
  int32_t take_matched(const std::vector<uint64_t>& hashes, std::vector<int32_t>* table);

  // Page moves emitted since the last call, in the order workers must apply them.
  std::vector<CacheOp> take_ops();
  // Applies a step's outcome: failed disk loads and stores and failed swap-outs lose their pages.
  // Returns the device pages that a failed swap-in or copy left with wrong bytes (their holders
  // must recompute them; they are no longer matched by hash).
  std::vector<int32_t> on_ops_failed(const std::vector<CacheOp>& ops, const std::vector<int32_t>& failed);

 private:
  struct Slot {
    int32_t ref = 0;        // device pages only
    uint64_t hash = 0;
    bool has_hash = false;
    bool pinned = false;    // host slot being filled from disk this step
    std::list<int32_t>::iterator lru;  // valid while cached with no reference
  };
  struct TierState {
    std::vector<Slot> slots;
    std::vector<int32_t> free;
    std::list<int32_t> lru;  // cached, unreferenced, least recently used first
    std::unordered_map<uint64_t, int32_t> index;  // hash -> slot
  };

  TierState& tier(Tier t) { return tiers_[static_cast<int>(t)]; }
  const TierState& tier(Tier t) const { return tiers_[static_cast<int>(t)]; }
  // A free slot of a tier, evicting its least recently used cached page (downwards) if needed;
  // -1 when none can be had.
  int32_t acquire(Tier t);
  void evict(Tier t, int32_t slot);
  void drop_cached(Tier t, int32_t slot);
  void forget(Tier t, int32_t slot);  // drop the slot's hash from the index
  void push_op(CacheOpKind kind, int32_t src, int32_t dst, uint64_t hash);
  void add_ref(int32_t page);
  bool drop_ref(int32_t page);  // false when the page has no reference left

  int32_t block_size_;
  TierState tiers_[3];
  std::vector<Slot>& device_ = tiers_[0].slots;
  std::vector<int32_t>& free_ = tiers_[0].free;
  std::list<int32_t>& device_lru_ = tiers_[0].lru;
  std::vector<CacheOp> ops_;
  std::vector<int32_t> staged_;  // host slots filled from disk this step (pinned until the result)
  TierCounters counters_;
  int32_t n_shared_ = 0;
};

}  // namespace kvmesh
