// CudaBackend's batch ops: staging a ragged batch's layout (slots, contexts, block tables,
// prefill tiles) on the device, and the paged KV write and attention that read it.
#include <algorithm>
#include <string>
#include <vector>

#include "worker/cuda/cuda_backend_impl.h"

namespace kvmesh {
namespace {

constexpr int32_t kKeysPerSplit = 256;  // positions of the longest context per attention split
constexpr int32_t kMaxSplits = 64;      // blocks one (row, head) is split over at most
constexpr int32_t kMinTiledRows = 16;   // a prefill chunk this long goes to the tiled attention

}  // namespace

void CudaBackend::prepare_batch(const BatchLayout& batch) {
  const TimedOp timed = time_op("stage the batch");
  if (!enter()) return;
  if (graphs_->recording()) {
    note(internal_error("a batch staged while a graph is recorded"));
    return;
  }
  const auto n_tokens = static_cast<int64_t>(batch.positions.size());
  const bool graph = batch.padded_rows > 0;
  if (batch.block_size < 1 || batch.slots.size() != batch.positions.size() ||
      (graph && (batch.padded_rows < n_tokens || batch.max_context < 1))) {
    note(invalid_argument("a batch layout without its block size, with slots and positions of different "
                          "lengths, or padded below its rows"));
    return;
  }
  const int64_t t = graph ? batch.padded_rows : n_tokens;
  meta_host_.assign(static_cast<size_t>(3 * t), 0);
  std::fill(meta_host_.begin(), meta_host_.begin() + t, -1);  // padded rows write no slot
  int32_t max_ctx = 0, listed_max_ctx = 0;  // over all rows, and over the rows outside tiles
  for (const SeqSpan& span : batch.seqs) {
    const int32_t table_at = static_cast<int32_t>(meta_host_.size());
    const int32_t n_ctx_end = span.n_past + span.n_tokens;
    for (int32_t i = 0; i < span.n_tokens; ++i) {
      const int64_t row = span.token_begin + i;
      meta_host_[static_cast<size_t>(t + row)] = span.n_past + i + 1;  // causal: itself included
      meta_host_[static_cast<size_t>(2 * t + row)] = table_at;
    }
    max_ctx = std::max(max_ctx, n_ctx_end);
    const int32_t n_pages = (n_ctx_end + batch.block_size - 1) / batch.block_size;
    meta_host_.insert(meta_host_.end(), span.block_table, span.block_table + n_pages);
  }
  for (int64_t row = 0; row < n_tokens; ++row) meta_host_[static_cast<size_t>(row)] = batch.slots[row];
  // Eager batches: long prefill chunks in tiles for the tiled attention, the other rows listed.
  n_tiles_ = 0;
  n_listed_ = 0;
  if (!graph) {
    std::vector<int32_t> listed;
    tiles_at_ = static_cast<int64_t>(meta_host_.size());
    for (size_t k = 0; k < batch.seqs.size(); ++k) {
      const SeqSpan& span = batch.seqs[k];
      if (span.n_tokens < kMinTiledRows) {
        for (int32_t i = 0; i < span.n_tokens; ++i) listed.push_back(span.token_begin + i);
        listed_max_ctx = std::max(listed_max_ctx, span.n_past + span.n_tokens);
        continue;
      }
      const int32_t table_at = meta_host_[static_cast<size_t>(2 * t + span.token_begin)];
      for (int32_t i = 0; i < span.n_tokens; i += kPrefillTileRows) {
        const int32_t rows = std::min(kPrefillTileRows, span.n_tokens - i);
        meta_host_.insert(meta_host_.end(), {span.token_begin + i, rows, span.n_past + i, table_at});
        ++n_tiles_;
      }
    }
    listed_at_ = static_cast<int64_t>(meta_host_.size());
    n_listed_ = static_cast<int64_t>(listed.size());
    meta_host_.insert(meta_host_.end(), listed.begin(), listed.end());
  }
  void* dst = nullptr;
  if (graph) {
    if (max_ctx > batch.max_context) {
      note(invalid_argument("a context of " + std::to_string(max_ctx) + " past the graph bound of " +
                            std::to_string(batch.max_context)));
      return;
    }
    // Sized for the worst case once (one sequence per row), so the address a graph recorded never
    // moves.
    const int64_t pages_per_row = (batch.max_context + batch.block_size - 1) / batch.block_size;
    const auto capacity = static_cast<size_t>(t * (3 + pages_per_row));
    if (batch.seqs.size() > static_cast<size_t>(t) || meta_host_.size() > capacity) {
      note(invalid_argument("a graph batch of " + std::to_string(batch.seqs.size()) + " sequences over " +
                            std::to_string(t) + " rows"));
      return;
    }
    Buffer& fixed = graph_meta_[batch.padded_rows];
    dst = scratch(fixed, capacity * sizeof(int32_t));
    max_ctx = batch.max_context;
  } else {
    dst = scratch(meta_, meta_host_.size() * sizeof(int32_t));
  }
  if (dst == nullptr) return;
  if (!note(staging_.upload(dst, meta_host_.data(), meta_host_.size() * sizeof(int32_t), stream_))) return;
  staged_ = &batch;
  staged_decode_only_ = std::all_of(batch.seqs.begin(), batch.seqs.end(),
                                    [](const SeqSpan& span) { return span.n_tokens == 1; });
  staged_tokens_ = batch.positions.size();
  staged_rows_ = t;
  staged_max_ctx_ = max_ctx;
  staged_listed_max_ctx_ = graph ? max_ctx : listed_max_ctx;
  staged_meta_ = static_cast<const int32_t*>(dst);
}

bool CudaBackend::ensure_staged(const BatchLayout& batch) {
  if (staged_ != &batch || staged_tokens_ != batch.positions.size()) prepare_batch(batch);
  return error_.is_ok() && staged_meta_ != nullptr;
}

bool CudaBackend::pool_geometry(const KvPoolView& pool, KvPoolGeometry* g) {
  auto dtype = kernel_dtype(pool.dtype);
  if (!dtype.is_ok()) return note(dtype.status().with_context("KV pages"));
  if (pool.head_dim < 1 || pool.head_dim > kMaxHeadDim)
    return note(invalid_argument("head_dim " + std::to_string(pool.head_dim) + " outside [1, " +
                                 std::to_string(kMaxHeadDim) + "] for the CUDA attention kernel"));
  g->data = pool.data;
  g->dtype = *dtype;
  g->page_elems = pool.page_elems();
  g->block_size = pool.block_size;
  g->n_heads = pool.n_heads;
  g->head_dim = pool.head_dim;
  return true;
}

void CudaBackend::kv_write(const TensorView& qkv, const BatchLayout& batch, int32_t layer, KvPoolView pool) {
  const TimedOp timed = time_op("kv_write");
  KvPoolGeometry g;
  if (!enter() || !ensure_staged(batch) || !pool_geometry(pool, &g)) return;
  check(launch_kv_write(qkv.f32(), staged_meta_, staged_rows_, layer, g, on_stream()), "kv_write");
}

void CudaBackend::attention(const TensorView& qkv, const BatchLayout& batch, int32_t layer,
                            KvPoolView pool, TensorView out, const AttentionSpec& spec) {
  const TimedOp timed = time_op("attention");
  attend(qkv, batch, layer, pool, out, spec, false);
}

void CudaBackend::kv_write_attention(const TensorView& qkv, const BatchLayout& batch, int32_t layer,
                                     KvPoolView pool, TensorView out, const AttentionSpec& spec) {
  const TimedOp timed = time_op("kv_write + attention");
  if (!enter() || !ensure_staged(batch)) return;
  if (staged_decode_only_) {  // (prefill tiles need chunks of kMinTiledRows rows)
    attend(qkv, batch, layer, pool, out, spec, true);
    return;
  }
  kv_write(qkv, batch, layer, pool);
  attention(qkv, batch, layer, pool, out, spec);
}

void CudaBackend::attend(const TensorView& qkv, const BatchLayout& batch, int32_t layer, KvPoolView pool,
                         TensorView out, const AttentionSpec& spec, bool write_own_kv) {
  const float scale = spec.scale_for(pool.head_dim);
  KvPoolGeometry g;
  KernelDType od = KernelDType::f32;
  if (!enter() || !ensure_staged(batch) || !pool_geometry(pool, &g) || !activation_dtype(out, &od)) return;
  const int64_t t = staged_rows_;
  const int32_t* meta = staged_meta_;
  AttentionRows rows{meta + t, meta + 2 * t, meta};
  if (write_own_kv) rows.write_slots = meta;
  int64_t n_rows = t;  // rows for the row-per-block kernel, and their longest context
  int32_t max_ctx = staged_max_ctx_;
  if (n_tiles_ > 0 && prefill_attention_serves(g)) {
    if (!check(launch_prefill_attention(qkv.f32(), reinterpret_cast<const PrefillTile*>(meta + tiles_at_),
                                        n_tiles_, meta, layer, g, scale, spec.window, out.data, od,
                                        on_stream()),
               "prefill attention"))
      return;
    rows.listed = meta + listed_at_;
    n_rows = n_listed_;
    max_ctx = staged_listed_max_ctx_;
    if (n_rows == 0) return;
  }
  // Split long contexts when the rows alone would not fill the GPU: one split per kKeysPerSplit
  // positions of the longest context (a graph's bound), at most kMaxSplits; each row then shares
  // its own context evenly over the splits.
  int32_t n_splits = 1;
  if (max_ctx > 2 * kKeysPerSplit && n_rows * pool.n_heads <= kMaxSplitPairs)
    n_splits = std::min<int32_t>((max_ctx + kKeysPerSplit - 1) / kKeysPerSplit, kMaxSplits);
  float* partial = nullptr;
  if (n_splits > 1) {
    const size_t bytes = static_cast<size_t>(t * pool.n_heads * n_splits * (pool.head_dim + 2)) * sizeof(float);
    partial = static_cast<float*>(scratch(partial_, bytes));
    if (partial == nullptr) return;
  }
  check(launch_paged_attention(qkv.f32(), rows, n_rows, layer, g, scale, spec.window, n_splits, partial,
                               static_cast<int32_t*>(arrivals_.data()), out.data, od, on_stream()),
        "attention");
}

}  // namespace kvmesh
