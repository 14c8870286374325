// BlockManager: block tables, reference counts, the prefix index and per-tier LRU eviction
// (device -> host -> disk -> dropped), emitted as CacheOps.
#include "coordinator/block_manager.h"

#include <algorithm>

#include "common/hashing.h"

namespace kvmesh {

const char* tier_name(Tier tier) {
  switch (tier) {
    case Tier::device: return "device";
    case Tier::host: return "host";
    case Tier::disk: return "disk";
  }
  return "?";
}

uint64_t page_hash(uint64_t parent_hash, const int32_t* tokens, int32_t n_tokens, const std::string& salt) {
  uint64_t h = kFnvOffset;  // FNV-1a over the parent, tokens and salt, each as 8 little-endian bytes
  auto mix = [&h](uint64_t v) {
    unsigned char bytes[8];
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<unsigned char>(v >> (8 * i));
    h = fnv1a64(bytes, sizeof bytes, h);
  };
  mix(parent_hash);
  for (int32_t i = 0; i < n_tokens; ++i) mix(static_cast<uint32_t>(tokens[i]));
  mix(salt.size());
  for (char c : salt) mix(static_cast<unsigned char>(c));
  return h;
}

BlockManager::BlockManager(const TierCapacity& capacity, int32_t block_size) : block_size_(block_size) {
  KVMESH_CHECK(capacity.device_pages > 0 && block_size > 0);
  const int32_t sizes[3] = {capacity.device_pages, capacity.host_slots, capacity.disk_slots};
  for (int t = 0; t < 3; ++t) {
    tiers_[t].slots.resize(static_cast<size_t>(std::max(0, sizes[t])));
    for (int32_t i = sizes[t] - 1; i >= 0; --i) tiers_[t].free.push_back(i);  // lowest id first
  }
  TierState& disk = tier(Tier::disk);
  for (const auto& page : capacity.recovered) {
    if (page.slot < 0 || page.slot >= static_cast<int32_t>(disk.slots.size())) continue;
    if (page.n_tokens != block_size_ || disk.index.count(page.page_hash)) continue;
    Slot& s = disk.slots[page.slot];
    s.hash = page.page_hash;
    s.has_hash = true;
    disk.index[page.page_hash] = page.slot;
    s.lru = disk.lru.insert(disk.lru.end(), page.slot);
    std::erase(disk.free, page.slot);
  }
}

int32_t BlockManager::n_cached(Tier t) const { return static_cast<int32_t>(tier(t).index.size()); }

int32_t BlockManager::pages_missing(const std::vector<int32_t>& table, int64_t n_tokens) const {
  const int32_t need = pages_for(n_tokens) - static_cast<int32_t>(table.size());
  return need > 0 ? need : 0;
}

void BlockManager::push_op(CacheOpKind kind, int32_t src, int32_t dst, uint64_t hash) {
  ops_.push_back(CacheOp{kind, src, dst, hash, block_size_});
}

void BlockManager::forget(Tier t, int32_t slot) {
  TierState& ts = tier(t);
  Slot& s = ts.slots[slot];
  if (s.has_hash) {
    auto it = ts.index.find(s.hash);
    if (it != ts.index.end() && it->second == slot) ts.index.erase(it);
  }
  s.has_hash = false;
  s.hash = 0;
}

// Moves a cached, unreferenced page one tier down (or drops it) so that its slot can be reused.
void BlockManager::evict(Tier t, int32_t slot) {
  TierState& ts = tier(t);
  Slot& s = ts.slots[slot];
  ts.lru.erase(s.lru);
  const uint64_t hash = s.hash;
  forget(t, slot);
  if (t == Tier::disk) {
    ++counters_.dropped;
    return;
  }
  const Tier below = t == Tier::device ? Tier::host : Tier::disk;
  for (int k = static_cast<int>(below); k < 3; ++k)
    if (tiers_[k].index.count(hash)) return;  // a copy is already in a lower tier
  const int32_t dst = acquire(below);
  if (dst < 0) {
    ++counters_.dropped;
    return;
  }
  push_op(t == Tier::device ? CacheOpKind::swap_out : CacheOpKind::disk_store, slot, dst, hash);
  ++counters_.moved_out[static_cast<int>(below)];
  TierState& bs = tier(below);
  Slot& d = bs.slots[dst];
  d.hash = hash;
  d.has_hash = true;
  bs.index[hash] = dst;
  d.lru = bs.lru.insert(bs.lru.end(), dst);
}

int32_t BlockManager::acquire(Tier t) {
  TierState& ts = tier(t);
  if (!ts.free.empty()) {
    const int32_t slot = ts.free.back();
    ts.free.pop_back();
    return slot;
  }
  if (ts.lru.empty()) return -1;
  const int32_t victim = ts.lru.front();
  evict(t, victim);
  return victim;
}

Status BlockManager::grow(std::vector<int32_t>* table, int64_t n_tokens) {
  const int32_t need = pages_missing(*table, n_tokens);
  if (need > n_free()) {
    return resource_exhausted("need " + std::to_string(need) + " free pages, have " + std::to_string(n_free()));
  }
  for (int32_t i = 0; i < need; ++i) {
    const int32_t page = acquire(Tier::device);
    KVMESH_CHECK(page >= 0 && device_[page].ref == 0);
    device_[page].ref = 1;
    table->push_back(page);
  }
  return Status::ok();
}

void BlockManager::add_ref(int32_t page) {
  if (++device_[page].ref == 2) ++n_shared_;
}

bool BlockManager::drop_ref(int32_t page) {
  if (--device_[page].ref == 1) --n_shared_;
  return device_[page].ref > 0;
}

std::vector<int32_t> BlockManager::fork(const std::vector<int32_t>& table) {
  for (int32_t page : table) {
    KVMESH_CHECK(page >= 0 && page < n_pages() && device_[page].ref > 0);
    add_ref(page);
  }
  return table;
}

bool BlockManager::needs_copy(const std::vector<int32_t>& table, int64_t first_token) const {
  const auto k = static_cast<size_t>(first_token / block_size_);
  return k < table.size() && device_[table[k]].ref > 1;
}

Status BlockManager::make_writable(std::vector<int32_t>* table, int64_t first_token) {
  if (!needs_copy(*table, first_token)) return Status::ok();
  if (n_free() < 1) return resource_exhausted("no free page for a copy-on-write");
  const auto k = static_cast<size_t>(first_token / block_size_);
  const int32_t shared = (*table)[k];
  const int32_t page = acquire(Tier::device);
  KVMESH_CHECK(page >= 0 && device_[page].ref == 0);
  device_[page].ref = 1;
  push_op(CacheOpKind::copy, shared, page, 0);
  drop_ref(shared);  // still held by the other tables
  (*table)[k] = page;
  ++counters_.copies;
  return Status::ok();
}

void BlockManager::release(std::vector<int32_t>* table) {
  for (int32_t page : *table) {
    KVMESH_CHECK(page >= 0 && page < n_pages() && device_[page].ref > 0);
    Slot& s = device_[page];
    if (drop_ref(page)) continue;
    if (s.has_hash) {
      s.lru = device_lru_.insert(device_lru_.end(), page);
    } else {
      free_.push_back(page);
    }
  }
  table->clear();
}

void BlockManager::register_full_page(int32_t page, uint64_t hash) {
  TierState& dev = tier(Tier::device);
  Slot& s = dev.slots[page];
  if (s.has_hash || dev.index.count(hash)) return;  // already known (another copy holds it)
  s.hash = hash;
  s.has_hash = true;
  dev.index[hash] = page;
}

std::vector<BlockManager::Hit> BlockManager::match(const std::vector<uint64_t>& hashes) const {
  std::vector<Hit> hits;
  for (uint64_t h : hashes) {
    bool found = false;
    for (Tier t : {Tier::device, Tier::host, Tier::disk}) {
      auto it = tier(t).index.find(h);
      if (it == tier(t).index.end() || tier(t).slots[it->second].pinned) continue;
      hits.push_back({t, it->second});
      found = true;
      break;
    }
    if (!found) break;
  }
  return hits;
}

bool BlockManager::stage_from_disk(const std::vector<uint64_t>& hashes) {
  const std::vector<Hit> hits = match(hashes);
  TierState& host = tier(Tier::host);
  // Keep this chain's host and disk pages out of reach of the evictions that staging may cause.
  std::vector<Hit> held;
  for (const Hit& h : hits) {
    if (h.tier == Tier::device) continue;
    TierState& ts = tier(h.tier);
    ts.lru.erase(ts.slots[h.id].lru);
    ts.slots[h.id].pinned = true;
    held.push_back(h);
  }
  bool staged_any = false;
  for (size_t i = 0; i < hits.size(); ++i) {
    if (hits[i].tier != Tier::disk) continue;
    const int32_t slot = acquire(Tier::host);
    if (slot < 0) break;
    push_op(CacheOpKind::disk_load, hits[i].id, slot, hashes[i]);
    ++counters_.moved_in[static_cast<int>(Tier::host)];
    ++counters_.hits[static_cast<int>(Tier::disk)];
    Slot& s = host.slots[slot];
    s.hash = hashes[i];
    s.has_hash = true;
    s.pinned = true;
    host.index[hashes[i]] = slot;
    staged_.push_back(slot);
    staged_any = true;
  }
  for (const Hit& h : held) {
    TierState& ts = tier(h.tier);
    ts.slots[h.id].pinned = false;
    ts.slots[h.id].lru = ts.lru.insert(ts.lru.end(), h.id);
  }
  return staged_any;
}

int32_t BlockManager::take_matched(const std::vector<uint64_t>& hashes, std::vector<int32_t>* table) {
  std::vector<Hit> hits = match(hashes);
  const auto first_disk = std::find_if(hits.begin(), hits.end(), [](const Hit& h) { return h.tier == Tier::disk; });
  hits.erase(first_disk, hits.end());  // disk pages are staged to host first (stage_from_disk)
  TierState& dev = tier(Tier::device);
  TierState& host = tier(Tier::host);
  // Hold every page of the run first, so that the evictions made to find device pages for the
  // host hits cannot take (or overwrite) a page of this same run.
  for (const Hit& h : hits) {
    TierState& ts = tier(h.tier);
    Slot& s = ts.slots[h.id];
    const bool was_unreferenced = h.tier != Tier::device || s.ref == 0;
    if (h.tier == Tier::device) add_ref(h.id);
    if (was_unreferenced) ts.lru.erase(s.lru);
  }
  int32_t taken = 0;
  for (size_t i = 0; i < hits.size(); ++i) {
    const Hit& h = hits[i];
    int32_t page = h.id;
    if (h.tier == Tier::host) {
      page = taken == static_cast<int32_t>(i) ? acquire(Tier::device) : -1;
      if (page >= 0) {
        push_op(CacheOpKind::swap_in, h.id, page, hashes[i]);
        ++counters_.moved_in[static_cast<int>(Tier::device)];
        Slot& d = dev.slots[page];
        d.ref = 1;
        d.hash = hashes[i];
        d.has_hash = true;
        dev.index[hashes[i]] = page;
      }
    } else if (taken != static_cast<int32_t>(i)) {
      page = -1;
      std::vector<int32_t> undo = {h.id};  // past a page we could not take: give this one back
      release(&undo);
    }
    if (h.tier == Tier::host) host.slots[h.id].lru = host.lru.insert(host.lru.end(), h.id);
    if (page < 0) continue;
    table->push_back(page);
    ++counters_.hits[static_cast<int>(h.tier)];
    ++taken;
  }
  return taken;
}

// Drops a cached page of a lower tier whose bytes cannot be trusted (or were never written).
void BlockManager::drop_cached(Tier t, int32_t slot) {
  TierState& ts = tier(t);
  if (slot < 0 || slot >= static_cast<int32_t>(ts.slots.size()) || !ts.slots[slot].has_hash) return;
  forget(t, slot);
  if (!ts.slots[slot].pinned) ts.lru.erase(ts.slots[slot].lru);
  ts.slots[slot].pinned = false;
  ts.free.push_back(slot);
}

std::vector<int32_t> BlockManager::on_ops_failed(const std::vector<CacheOp>& ops,
                                                 const std::vector<int32_t>& failed) {
  std::vector<int32_t> lost_device_pages;
  for (int32_t index : failed) {
    if (index < 0 || index >= static_cast<int32_t>(ops.size())) continue;
    const CacheOp& op = ops[index];
    switch (op.kind) {
      case CacheOpKind::disk_load:
        ++counters_.failed_loads;
        if (std::find(staged_.begin(), staged_.end(), op.dst) != staged_.end()) {
          std::erase(staged_, op.dst);
          drop_cached(Tier::host, op.dst);
        }
        drop_cached(Tier::disk, op.src);  // the slot on disk is not to be trusted again
        break;
      case CacheOpKind::disk_store:
        ++counters_.failed_stores;
        ++counters_.dropped;
        drop_cached(Tier::disk, op.dst);
        break;
      case CacheOpKind::swap_out:
        ++counters_.failed_moves;
        ++counters_.dropped;
        drop_cached(Tier::host, op.dst);
        break;
      case CacheOpKind::swap_in:
      case CacheOpKind::copy:
        // The device page a sequence already holds has wrong bytes: it must not be matched again,
        // and whoever holds it recomputes (Scheduler::postprocess).
        ++counters_.failed_moves;
        if (op.dst >= 0 && op.dst < n_pages()) {
          forget(Tier::device, op.dst);
          lost_device_pages.push_back(op.dst);
        }
        if (op.kind == CacheOpKind::swap_in) drop_cached(Tier::host, op.src);
        break;
    }
  }
  TierState& host = tier(Tier::host);
  for (int32_t slot : staged_) {  // loaded: ordinary cached host pages from now on
    host.slots[slot].pinned = false;
    host.slots[slot].lru = host.lru.insert(host.lru.end(), slot);
  }
  staged_.clear();
  return lost_device_pages;
}

std::vector<CacheOp> BlockManager::take_ops() {
  std::vector<CacheOp> ops;
  ops.swap(ops_);
  return ops;
}

}  // namespace kvmesh
