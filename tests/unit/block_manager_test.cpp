// BlockManager: growth, release, and failed growth leaving state untouched.
#include <gtest/gtest.h>

#include "coordinator/block_manager.h"

namespace kvmesh {
namespace {

TEST(BlockManager, GrowsAndReleases) {
  BlockManager bm(8, 16);
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

TEST(BlockManager, FailedGrowLeavesStateUntouched) {
  BlockManager bm(4, 4);
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
  BlockManager bm(16, 1);
  std::vector<int32_t> a, b;
  ASSERT_TRUE(bm.grow(&a, 7).is_ok());
  ASSERT_TRUE(bm.grow(&b, 9).is_ok());
  std::vector<int32_t> all = a;
  all.insert(all.end(), b.begin(), b.end());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::unique(all.begin(), all.end()), all.end());
  EXPECT_EQ(bm.n_free(), 0);
}

}  // namespace
}  // namespace kvmesh
