// stage_batch (the CUDA batch ops' host array) without a device: eager batches with prefill tiles
// and listed rows, a graph's padded layout sized for its worst case, the layouts it refuses, and
// which layout a staged batch serves.
#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "worker/cuda/layout/kernel_args.h"
#include "worker/cuda/layout/staged_batch.h"

namespace kvmesh {
namespace {

struct Seq {
  int32_t n_past;
  int32_t n_tokens;
};

// A batch of seqs in row order; each sequence's pages numbered from 100 * (its index + 1), slots
// 1000 + row.
struct Case {
  std::vector<std::vector<int32_t>> tables;
  BatchLayout batch;
};
Case make_case(int32_t block_size, const std::vector<Seq>& seqs) {
  Case c;
  c.batch.block_size = block_size;
  c.tables.resize(seqs.size());
  int32_t row = 0;
  for (size_t k = 0; k < seqs.size(); ++k) {
    const int32_t n_pages = (seqs[k].n_past + seqs[k].n_tokens + block_size - 1) / block_size;
    c.tables[k].resize(static_cast<size_t>(n_pages));
    std::iota(c.tables[k].begin(), c.tables[k].end(), 100 * static_cast<int32_t>(k + 1));
    for (int32_t i = 0; i < seqs[k].n_tokens; ++i) {
      c.batch.positions.push_back(seqs[k].n_past + i);
      c.batch.slots.push_back(1000 + row + i);
    }
    c.batch.seqs.push_back({row, seqs[k].n_tokens, seqs[k].n_past, nullptr});
    row += seqs[k].n_tokens;
  }
  for (size_t k = 0; k < seqs.size(); ++k) c.batch.seqs[k].block_table = c.tables[k].data();
  return c;
}

void append(std::vector<int32_t>& v, const std::vector<int32_t>& more) { v.insert(v.end(), more.begin(), more.end()); }

TEST(StagedBatch, EagerBatchListsShortRowsAndTilesLongPrefillChunks) {
  // A prefill chunk of 20 rows after 5 cached (a tile), a decode row and a 3-row chunk (listed).
  Case c = make_case(4, {{5, 20}, {9, 1}, {0, 3}});
  auto staged = stage_batch(c.batch);
  ASSERT_TRUE(staged.is_ok()) << staged.status().to_string();
  const StagedBatch& s = *staged;
  const int32_t t = 24;
  std::vector<int32_t> want(static_cast<size_t>(t));
  std::iota(want.begin(), want.end(), 1000);  // slots
  for (int32_t i = 0; i < 20; ++i) want.push_back(5 + i + 1);  // row_ctx
  append(want, {10, 1, 2, 3});
  for (int32_t i = 0; i < 20; ++i) want.push_back(72);  // row_table: tables after 3 * 24
  append(want, {79, 82, 82, 82});
  append(want, {100, 101, 102, 103, 104, 105, 106, 200, 201, 202, 300});  // 7, 3 and 1 pages
  append(want, {0, 20, 5, 72});       // the tile
  append(want, {20, 21, 22, 23});     // the listed rows
  EXPECT_EQ(s.host, want);
  EXPECT_EQ(s.rows, t);
  EXPECT_EQ(s.graph_rows, 0);
  EXPECT_EQ(s.device_elems, want.size());
  EXPECT_EQ(s.row_ctx_at(), t);
  EXPECT_EQ(s.row_table_at(), 2 * t);
  EXPECT_EQ(s.n_tiles, 1);
  EXPECT_EQ(s.tiles_at, 83);
  EXPECT_EQ(s.n_listed, 4);
  EXPECT_EQ(s.listed_at, 87);
  EXPECT_EQ(s.max_ctx, 25);
  EXPECT_EQ(s.listed_max_ctx, 10);
  EXPECT_FALSE(s.decode_only);
}

TEST(StagedBatch, PrefillChunksSplitIntoTilesFromTheShortestTiledLength) {
  Case c = make_case(16, {{0, 130}, {7, kMinTiledRows}, {0, kMinTiledRows - 1}});
  auto staged = stage_batch(c.batch);
  ASSERT_TRUE(staged.is_ok());
  const StagedBatch& s = *staged;
  ASSERT_EQ(s.n_tiles, 4);
  const auto* tiles = reinterpret_cast<const PrefillTile*>(s.host.data() + s.tiles_at);
  const int32_t table0 = static_cast<int32_t>(3 * s.rows);
  const int32_t table1 = table0 + 9;  // 130 positions in pages of 16
  const int32_t want[4][4] = {{0, kPrefillTileRows, 0, table0},
                              {kPrefillTileRows, kPrefillTileRows, kPrefillTileRows, table0},
                              {2 * kPrefillTileRows, 2, 2 * kPrefillTileRows, table0},
                              {130, kMinTiledRows, 7, table1}};
  for (int k = 0; k < 4; ++k) {
    EXPECT_EQ(tiles[k].row_begin, want[k][0]) << "tile " << k;
    EXPECT_EQ(tiles[k].n_rows, want[k][1]) << "tile " << k;
    EXPECT_EQ(tiles[k].n_past, want[k][2]) << "tile " << k;
    EXPECT_EQ(tiles[k].table_at, want[k][3]) << "tile " << k;
  }
  EXPECT_EQ(s.n_listed, kMinTiledRows - 1);
  EXPECT_EQ(s.host[static_cast<size_t>(s.listed_at)], 130 + kMinTiledRows);
  EXPECT_EQ(s.listed_max_ctx, kMinTiledRows - 1);
  EXPECT_EQ(s.max_ctx, 130);
}

TEST(StagedBatch, DecodeRowsOnly) {
  Case c = make_case(8, {{30, 1}, {0, 1}});
  auto staged = stage_batch(c.batch);
  ASSERT_TRUE(staged.is_ok());
  EXPECT_TRUE(staged->decode_only);
  EXPECT_EQ(staged->n_tiles, 0);
  EXPECT_EQ(staged->n_listed, 2);
  EXPECT_EQ(staged->listed_max_ctx, 31);
}

TEST(StagedBatch, GraphLayoutPadsRowsAndTakesItsBounds) {
  Case c = make_case(8, {{20, 1}, {3, 1}});
  c.batch.padded_rows = 4;
  c.batch.max_context = 32;
  auto staged = stage_batch(c.batch);
  ASSERT_TRUE(staged.is_ok()) << staged.status().to_string();
  const StagedBatch& s = *staged;
  const std::vector<int32_t> want = {1000, 1001, -1, -1,  // padded rows write no slot
                                     21, 4, 0, 0,         // nor read any context
                                     12, 15, 0, 0,         // tables after 3 * 4
                                     100, 101, 102, 200};
  EXPECT_EQ(s.host, want);
  EXPECT_EQ(s.rows, 4);
  EXPECT_EQ(s.graph_rows, 4);
  EXPECT_EQ(s.device_elems, 4u * (3 + 4));  // one sequence per row, each up to the bound
  EXPECT_EQ(s.max_ctx, 32);
  EXPECT_EQ(s.listed_max_ctx, 32);
  EXPECT_EQ(s.n_tiles, 0);
  EXPECT_EQ(s.n_listed, 0);
  EXPECT_TRUE(s.decode_only);
  // A graph takes no tiles, however long a chunk.
  Case p = make_case(8, {{0, 20}});
  p.batch.padded_rows = 24;
  p.batch.max_context = 32;
  auto prefill = stage_batch(p.batch);
  ASSERT_TRUE(prefill.is_ok());
  EXPECT_EQ(prefill->n_tiles, 0);
  EXPECT_FALSE(prefill->decode_only);
}

TEST(StagedBatch, RefusesLayoutsItCannotStage) {
  const auto refused = [](const BatchLayout& batch) {
    auto staged = stage_batch(batch);
    return !staged.is_ok() && staged.status().code() == StatusCode::invalid_argument;
  };
  Case c = make_case(8, {{3, 2}});
  BatchLayout b = c.batch;
  b.block_size = 0;
  EXPECT_TRUE(refused(b));
  b = c.batch;
  b.slots.pop_back();
  EXPECT_TRUE(refused(b));
  b = c.batch;
  b.padded_rows = 1;  // below its 2 rows
  b.max_context = 32;
  EXPECT_TRUE(refused(b));
  b.padded_rows = 4;
  b.max_context = 0;
  EXPECT_TRUE(refused(b));
  b.max_context = 4;  // a context of 5
  EXPECT_TRUE(refused(b));
  b.max_context = 5;
  EXPECT_FALSE(refused(b));
  // More sequences than the graph has rows (sequences without rows).
  Case empty = make_case(8, {{1, 0}, {1, 0}, {1, 0}});
  empty.batch.padded_rows = 2;
  empty.batch.max_context = 8;
  EXPECT_TRUE(refused(empty.batch));
}

TEST(StagedBatch, ServesTheLayoutItWasStagedFromWhileItsLengthHolds) {
  Case c = make_case(8, {{3, 2}});
  auto staged = stage_batch(c.batch);
  ASSERT_TRUE(staged.is_ok());
  EXPECT_TRUE(staged->stages(c.batch));
  const BatchLayout copy = c.batch;
  EXPECT_FALSE(staged->stages(copy));
  c.batch.positions.push_back(5);
  EXPECT_FALSE(staged->stages(c.batch));
  EXPECT_FALSE(StagedBatch{}.stages(copy));
}

}  // namespace
}  // namespace kvmesh
