// stage_batch: a BatchLayout as the host array the CUDA batch ops read (see staged_batch.h).
#include "worker/cuda/layout/staged_batch.h"

#include <algorithm>
#include <string>

#include "worker/cuda/layout/kernel_args.h"

namespace kvmesh {
namespace {

// Slots, each row's context and block table, then the block tables themselves; s.max_ctx.
void stage_rows(const BatchLayout& batch, StagedBatch& s) {
  const int64_t t = s.rows;
  std::vector<int32_t>& meta = s.host;
  meta.assign(static_cast<size_t>(3 * t), 0);
  std::fill(meta.begin(), meta.begin() + t, -1);  // padded rows write no slot
  for (const SeqSpan& span : batch.seqs) {
    const int32_t table_at = static_cast<int32_t>(meta.size());
    const int32_t n_ctx_end = span.n_past + span.n_tokens;
    for (int32_t i = 0; i < span.n_tokens; ++i) {
      const int64_t row = span.token_begin + i;
      meta[static_cast<size_t>(t + row)] = span.n_past + i + 1;  // causal: itself included
      meta[static_cast<size_t>(2 * t + row)] = table_at;
    }
    s.max_ctx = std::max(s.max_ctx, n_ctx_end);
    const int32_t n_pages = (n_ctx_end + batch.block_size - 1) / batch.block_size;
    meta.insert(meta.end(), span.block_table, span.block_table + n_pages);
  }
  const auto n_tokens = static_cast<int64_t>(batch.positions.size());
  for (int64_t row = 0; row < n_tokens; ++row) meta[static_cast<size_t>(row)] = batch.slots[row];
}

// Eager batches: long prefill chunks in tiles for the tiled attention, the other rows listed.
void stage_tiles(const BatchLayout& batch, StagedBatch& s) {
  std::vector<int32_t>& meta = s.host;
  std::vector<int32_t> listed;
  s.tiles_at = static_cast<int64_t>(meta.size());
  for (const SeqSpan& span : batch.seqs) {
    if (span.n_tokens < kMinTiledRows) {
      for (int32_t i = 0; i < span.n_tokens; ++i) listed.push_back(span.token_begin + i);
      s.listed_max_ctx = std::max(s.listed_max_ctx, span.n_past + span.n_tokens);
      continue;
    }
    const int32_t table_at = meta[static_cast<size_t>(s.row_table_at() + span.token_begin)];
    for (int32_t i = 0; i < span.n_tokens; i += kPrefillTileRows) {
      const int32_t rows = std::min(kPrefillTileRows, span.n_tokens - i);
      meta.insert(meta.end(), {span.token_begin + i, rows, span.n_past + i, table_at});
      ++s.n_tiles;
    }
  }
  s.listed_at = static_cast<int64_t>(meta.size());
  s.n_listed = static_cast<int64_t>(listed.size());
  meta.insert(meta.end(), listed.begin(), listed.end());
}

// A graph's layout: within its context bound and its worst-case size (one sequence per row), which
// its device copy is sized for once, so the address a graph recorded never moves.
Status fit_graph(const BatchLayout& batch, StagedBatch& s) {
  if (s.max_ctx > batch.max_context)
    return invalid_argument("a context of " + std::to_string(s.max_ctx) + " past the graph bound of " +
                            std::to_string(batch.max_context));
  const int64_t t = s.rows;
  const int64_t pages_per_row = (batch.max_context + batch.block_size - 1) / batch.block_size;
  const auto capacity = static_cast<size_t>(t * (3 + pages_per_row));
  if (batch.seqs.size() > static_cast<size_t>(t) || s.host.size() > capacity)
    return invalid_argument("a graph batch of " + std::to_string(batch.seqs.size()) + " sequences over " +
                            std::to_string(t) + " rows");
  s.device_elems = capacity;
  s.max_ctx = batch.max_context;
  s.listed_max_ctx = s.max_ctx;
  return Status::ok();
}

}  // namespace

Result<StagedBatch> stage_batch(const BatchLayout& batch) {
  const auto n_tokens = static_cast<int64_t>(batch.positions.size());
  const bool graph = batch.padded_rows > 0;
  if (batch.block_size < 1 || batch.slots.size() != batch.positions.size() ||
      (graph && (batch.padded_rows < n_tokens || batch.max_context < 1)))
    return invalid_argument("a batch layout without its block size, with slots and positions of different "
                            "lengths, or padded below its rows");
  StagedBatch s;
  s.rows = graph ? batch.padded_rows : n_tokens;
  s.graph_rows = batch.padded_rows;
  stage_rows(batch, s);
  if (graph) {
    KVMESH_RETURN_IF_ERROR(fit_graph(batch, s));
  } else {
    stage_tiles(batch, s);
    s.device_elems = s.host.size();
  }
  s.decode_only = std::all_of(batch.seqs.begin(), batch.seqs.end(),
                              [](const SeqSpan& span) { return span.n_tokens == 1; });
  s.source = &batch;
  s.n_tokens = batch.positions.size();
  return s;
}

}  // namespace kvmesh
