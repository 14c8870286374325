// BlockManager: growth and release, the prefix index, LRU eviction down the tiers as CacheOps,
// and failed disk operations losing their pages.
#include <gtest/gtest.h>

#include <algorithm>

#include "coordinator/block_manager.h"

namespace kvmesh {
namespace {

TierCapacity capacity(int32_t device, int32_t host = 0, int32_t disk = 0) {
  TierCapacity c;
  c.device_pages = device;
  c.host_slots = host;
  c.disk_slots = disk;
  return c;
}

TEST(BlockManager, GrowsAndReleases) {
  BlockManager bm(capacity(8), 16);
  std::vector<int32_t> table;
  ASSERT_TRUE(bm.grow(&table, 1).is_ok());
  EXPECT_EQ(table.size(), 1u);
  ASSERT_TRUE(bm.grow(&table, 16).is_ok());
  EXPECT_EQ(table.size(), 1u);
  ASSERT_TRUE(bm.grow(&table, 17).is_ok());
  EXPECT_EQ(table.size(), 2u);
  EXPECT_EQ(bm.n_used(), 2);
  bm.release(&table);
  EXPECT_TRUE(table.empty());
  EXPECT_EQ(bm.n_free(), 8);
}

TEST(BlockManager, ForkSharesPagesAndCopiesOnlyTheWrittenPartialPage) {
  BlockManager bm(capacity(8), 4);
  std::vector<int32_t> parent;
  ASSERT_TRUE(bm.grow(&parent, 6).is_ok());  // one full page, one holding 2 of 4 tokens
  std::vector<int32_t> child = bm.fork(parent);
  EXPECT_EQ(child, parent);
  EXPECT_EQ(bm.n_used(), 2);
  EXPECT_EQ(bm.n_shared(), 2);
  EXPECT_EQ(bm.ref_count(parent[0]), 2);
  EXPECT_TRUE(bm.needs_copy(child, 6));   // token 6 lands in the shared, partly filled page
  EXPECT_FALSE(bm.needs_copy(child, 8));  // a new page
  ASSERT_TRUE(bm.make_writable(&child, 6).is_ok());
  EXPECT_EQ(child[0], parent[0]);          // the full page stays shared
  EXPECT_NE(child[1], parent[1]);
  auto ops = bm.take_ops();
  ASSERT_EQ(ops.size(), 1u);
  EXPECT_EQ(ops[0].kind, CacheOpKind::copy);
  EXPECT_EQ(ops[0].src, parent[1]);
  EXPECT_EQ(ops[0].dst, child[1]);
  EXPECT_EQ(bm.counters().copies, 1);
  EXPECT_FALSE(bm.needs_copy(parent, 6));  // the parent is now the page's only holder
  ASSERT_TRUE(bm.make_writable(&parent, 6).is_ok());
  EXPECT_TRUE(bm.take_ops().empty());
  bm.release(&child);
  EXPECT_EQ(bm.n_shared(), 0);
  bm.release(&parent);
  EXPECT_EQ(bm.n_used(), 0);
}

TEST(BlockManager, CopyOnWriteFailsCleanlyWithoutAFreePage) {
  BlockManager bm(capacity(2), 4);
  std::vector<int32_t> parent;
  ASSERT_TRUE(bm.grow(&parent, 6).is_ok());
  std::vector<int32_t> child = bm.fork(parent);
  const std::vector<int32_t> before = child;
  EXPECT_EQ(bm.make_writable(&child, 6).code(), StatusCode::resource_exhausted);
  EXPECT_EQ(child, before);
  EXPECT_TRUE(bm.take_ops().empty());
}

TEST(BlockManager, FailedGrowLeavesStateUntouched) {
  BlockManager bm(capacity(4), 4);
  std::vector<int32_t> a, b;
  ASSERT_TRUE(bm.grow(&a, 12).is_ok());
  EXPECT_FALSE(bm.can_grow(b, 8));
  Status st = bm.grow(&b, 8);
  EXPECT_EQ(st.code(), StatusCode::resource_exhausted);
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(bm.n_free(), 1);
  EXPECT_EQ(bm.pages_missing(b, 8), 2);
}

TEST(BlockManager, PagesAreDistinct) {
  BlockManager bm(capacity(16), 1);
  std::vector<int32_t> a, b;
  ASSERT_TRUE(bm.grow(&a, 7).is_ok());
  ASSERT_TRUE(bm.grow(&b, 9).is_ok());
  std::vector<int32_t> all = a;
  all.insert(all.end(), b.begin(), b.end());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::unique(all.begin(), all.end()), all.end());
  EXPECT_EQ(bm.n_free(), 0);
}

TEST(BlockManager, PageHashDependsOnParentTokensAndSalt) {
  const int32_t t[4] = {1, 2, 3, 4};
  const uint64_t h = page_hash(0, t, 4, "");
  EXPECT_EQ(h, page_hash(0, t, 4, ""));
  EXPECT_NE(h, page_hash(1, t, 4, ""));
  EXPECT_NE(h, page_hash(0, t, 3, ""));
  EXPECT_NE(h, page_hash(0, t, 4, "tenant-a"));
}

TEST(BlockManager, ReleasedFullPagesStayCachedAndAreShared) {
  BlockManager bm(capacity(4), 4);
  std::vector<int32_t> a;
  ASSERT_TRUE(bm.grow(&a, 10).is_ok());  // 3 pages, two of them full
  bm.register_full_page(a[0], 100);
  bm.register_full_page(a[1], 200);
  bm.release(&a);
  EXPECT_EQ(bm.n_free(), 4);  // cached pages can be handed out again
  EXPECT_EQ(bm.n_cached(Tier::device), 2);
  std::vector<int32_t> b, c;
  EXPECT_EQ(bm.take_matched({100, 200, 300}, &b), 2);
  EXPECT_EQ(bm.take_matched({100}, &c), 1);
  EXPECT_EQ(b[0], c[0]);        // one page, two references
  EXPECT_EQ(bm.n_used(), 2);
  EXPECT_TRUE(bm.take_ops().empty());
  EXPECT_EQ(bm.counters().hits[0], 3);
}

TEST(BlockManager, EvictionMovesLeastRecentlyUsedPagesDownTheTiers) {
  BlockManager bm(capacity(2, 1, 1), 4);
  std::vector<int32_t> a;
  ASSERT_TRUE(bm.grow(&a, 8).is_ok());
  bm.register_full_page(a[0], 1);
  bm.register_full_page(a[1], 2);
  bm.release(&a);  // LRU order: page of hash 1, then 2
  std::vector<int32_t> b;
  ASSERT_TRUE(bm.grow(&b, 4).is_ok());  // evicts hash 1 to host
  auto ops = bm.take_ops();
  ASSERT_EQ(ops.size(), 1u);
  EXPECT_EQ(ops[0].kind, CacheOpKind::swap_out);
  EXPECT_EQ(ops[0].page_hash, 1u);
  ASSERT_TRUE(bm.grow(&b, 8).is_ok());  // evicts hash 2 to host: hash 1 goes on to disk first
  ops = bm.take_ops();
  ASSERT_EQ(ops.size(), 2u);
  EXPECT_EQ(ops[0].kind, CacheOpKind::disk_store);
  EXPECT_EQ(ops[0].page_hash, 1u);
  EXPECT_EQ(ops[1].kind, CacheOpKind::swap_out);
  EXPECT_EQ(ops[0].src, ops[1].dst);  // the host slot is written only after it was saved
  EXPECT_EQ(bm.n_cached(Tier::host), 1);
  EXPECT_EQ(bm.n_cached(Tier::disk), 1);

  // Reuse: hash 1 is on disk: staged to host first (hash 2 makes room), swapped in a step later.
  bm.release(&b);
  EXPECT_EQ(bm.match({1})[0].tier, Tier::disk);
  EXPECT_TRUE(bm.stage_from_disk({1}));
  ops = bm.take_ops();
  ASSERT_FALSE(ops.empty());
  EXPECT_EQ(ops.back().kind, CacheOpKind::disk_load);
  EXPECT_TRUE(bm.match({1}).empty() || bm.match({1})[0].tier == Tier::disk);  // host copy pinned
  bm.on_ops_failed(ops, {});
  EXPECT_EQ(bm.match({1})[0].tier, Tier::host);
  std::vector<int32_t> c;
  EXPECT_EQ(bm.take_matched({1}, &c), 1);
  ops = bm.take_ops();
  ASSERT_EQ(ops.size(), 1u);
  EXPECT_EQ(ops[0].kind, CacheOpKind::swap_in);
}

TEST(BlockManager, FailedDiskLoadLosesThePage) {
  BlockManager bm(capacity(1, 1, 2), 4);
  std::vector<int32_t> a;
  ASSERT_TRUE(bm.grow(&a, 4).is_ok());
  bm.register_full_page(a[0], 7);
  bm.release(&a);
  ASSERT_TRUE(bm.grow(&a, 4).is_ok());  // 7 -> host
  bm.release(&a);
  std::vector<int32_t> b;
  ASSERT_TRUE(bm.grow(&b, 4).is_ok());
  bm.register_full_page(b[0], 8);
  bm.release(&b);
  ASSERT_TRUE(bm.grow(&b, 4).is_ok());  // 8 -> host, 7 -> disk
  bm.release(&b);
  (void)bm.take_ops();
  ASSERT_EQ(bm.match({7})[0].tier, Tier::disk);
  ASSERT_TRUE(bm.stage_from_disk({7}));
  auto ops = bm.take_ops();
  int32_t load = -1;
  for (size_t i = 0; i < ops.size(); ++i)
    if (ops[i].kind == CacheOpKind::disk_load) load = static_cast<int32_t>(i);
  ASSERT_GE(load, 0);
  bm.on_ops_failed(ops, {load});
  EXPECT_TRUE(bm.match({7}).empty());
  EXPECT_EQ(bm.counters().failed_loads, 1);
}

TEST(BlockManager, RecoveredDiskPagesAreMatchable) {
  TierCapacity c = capacity(2, 1, 4);
  c.recovered.push_back({3, 555, 4});
  c.recovered.push_back({9, 556, 4});  // out of range: ignored
  BlockManager bm(c, 4);
  auto hits = bm.match({555});
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].tier, Tier::disk);
  EXPECT_EQ(hits[0].id, 3);
}

}  // namespace
}  // namespace kvmesh
