// StagedBatch: a ragged batch's layout as the CUDA attention and KV write read it (slots, contexts,
// block tables, prefill tiles), built on the host by stage_batch, a pure function.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/status.h"
#include "worker/backend.h"

namespace kvmesh {

// A prefill chunk this long goes to the tiled attention (eager batches only).
constexpr int32_t kMinTiledRows = 16;

struct StagedBatch {
  // int32, uploaded as one array: [slots R | row_ctx R | row_table R | block tables ... |
  // prefill tiles (4 each) | listed rows], R = rows. Padded rows: slot -1, context 0.
  std::vector<int32_t> host;
  size_t device_elems = 0;  // int32 the device copy spans: host.size(), or a graph's worst case
  int64_t rows = 0;         // the rows the ops run: T, or padded_rows for a graph's layout
  int32_t graph_rows = 0;   // padded_rows (0: eager), the key of a graph's fixed device copy
  int32_t max_ctx = 0;         // the longest context of any row (a graph's: its bound)
  int32_t listed_max_ctx = 0;  // the longest context of the rows outside prefill tiles
  int64_t n_tiles = 0, tiles_at = 0;    // prefill tiles at host[tiles_at]
  int64_t n_listed = 0, listed_at = 0;  // the rows outside tiles at host[listed_at]
  bool decode_only = false;             // every sequence has one row
  // The layout it was staged from: that very object, with as many tokens (ops on another layout
  // stage it anew).
  const BatchLayout* source = nullptr;
  size_t n_tokens = 0;

  bool stages(const BatchLayout& batch) const {
    return source == &batch && n_tokens == batch.positions.size();
  }
  int64_t row_ctx_at() const { return rows; }
  int64_t row_table_at() const { return 2 * rows; }
};

// The staged form of batch; invalid_argument for a layout without its block size, with slots and
// positions of different lengths, or (a graph's) padded below its rows, past its context bound or
// with more sequences than rows.
Result<StagedBatch> stage_batch(const BatchLayout& batch);

}  // namespace kvmesh
