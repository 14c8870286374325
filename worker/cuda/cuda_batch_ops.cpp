// CudaBackend's batch ops: a ragged batch's staged layout (layout/staged_batch.h) uploaded to the
// device, and the paged KV write and attention that read it.
#include <algorithm>
#include <string>
#include <vector>

#include "worker/cuda/cuda_backend_impl.h"

namespace kvmesh {
namespace {

constexpr int32_t kKeysPerSplit = 256;  // positions of the longest context per attention split
constexpr int32_t kMaxSplits = 64;      // blocks one (row, head) is split over at most

}  // namespace

void CudaBackend::prepare_batch(const BatchLayout& batch) {
  const TimedOp timed = time_op("stage the batch");
  if (!enter()) return;
  if (graphs_->recording()) {
    note(internal_error("a batch staged while a graph is recorded"));
    return;
  }
  Result<StagedBatch> staged = stage_batch(batch);
  if (!note(staged.status())) return;
  const StagedBatch& s = *staged;
  // A graph's copy at a fixed address per shape, sized once for its worst case.
  Buffer& buffer = s.graph_rows > 0 ? graph_meta_[s.graph_rows] : meta_;
  void* dst = scratch(buffer, s.device_elems * sizeof(int32_t));
  if (dst == nullptr) return;
  if (!note(staging_.upload(dst, s.host.data(), s.host.size() * sizeof(int32_t), stream_))) return;
  batch_ = {std::move(*staged), static_cast<const int32_t*>(dst)};
}

const CudaBackend::DeviceBatch* CudaBackend::staged_for(const BatchLayout& batch) {
  if (!batch_.staged.stages(batch)) prepare_batch(batch);
  return error_.is_ok() && batch_.meta != nullptr ? &batch_ : nullptr;
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
  if (!enter()) return;
  const DeviceBatch* b = staged_for(batch);
  if (b == nullptr || !pool_geometry(pool, &g)) return;
  check(launch_kv_write(qkv.f32(), b->meta, b->staged.rows, layer, g, on_stream()), "kv_write");
}

void CudaBackend::attention(const TensorView& qkv, const BatchLayout& batch, int32_t layer,
                            KvPoolView pool, TensorView out, const AttentionSpec& spec) {
  const TimedOp timed = time_op("attention");
  attend(qkv, batch, layer, pool, out, spec, false);
}

void CudaBackend::kv_write_attention(const TensorView& qkv, const BatchLayout& batch, int32_t layer,
                                     KvPoolView pool, TensorView out, const AttentionSpec& spec) {
  const TimedOp timed = time_op("kv_write + attention");
  if (!enter()) return;
  const DeviceBatch* b = staged_for(batch);
  if (b == nullptr) return;
  if (b->staged.decode_only) {  // (prefill tiles need chunks of kMinTiledRows rows)
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
  if (!enter()) return;
  const DeviceBatch* b = staged_for(batch);
  if (b == nullptr || !pool_geometry(pool, &g) || !activation_dtype(out, &od)) return;
  const StagedBatch& s = b->staged;
  const int64_t t = s.rows;
  const int32_t* meta = b->meta;
  AttentionRows rows{meta + s.row_ctx_at(), meta + s.row_table_at(), meta};
  if (write_own_kv) rows.write_slots = meta;
  int64_t n_rows = t;  // rows for the row-per-block kernel, and their longest context
  int32_t max_ctx = s.max_ctx;
  if (s.n_tiles > 0 && prefill_attention_serves(g)) {
    if (!check(launch_prefill_attention(qkv.f32(), reinterpret_cast<const PrefillTile*>(meta + s.tiles_at),
                                        s.n_tiles, meta, layer, g, scale, spec.window, out.data, od,
                                        on_stream()),
               "prefill attention"))
      return;
    rows.listed = meta + s.listed_at;
    n_rows = s.n_listed;
    max_ctx = s.listed_max_ctx;
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
