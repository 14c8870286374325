// DecodeGraphs: bucket choice, the fixed inputs of each bucket, recording and replay.
#include "worker/decode_graphs.h"

#include <cstdio>
#include <string>
#include <utility>

namespace kvmesh {

DecodeGraphs::DecodeGraphs(Backend& backend, const LayerWidths& widths, int32_t max_context, AgreeFn agree)
    : backend_(backend), widths_(widths), max_context_(max_context), agree_(std::move(agree)) {}

int32_t DecodeGraphs::bucket_rows(int64_t n) {
  if (n <= 1) return 1;
  if (n <= 2) return 2;
  if (n <= 4) return 4;
  return static_cast<int32_t>((n + 7) / 8 * 8);
}

bool DecodeGraphs::covers(const BatchLayout& batch) const {
  if (x_.empty() || batch.seqs.empty() || batch.seqs.size() > static_cast<size_t>(kMaxRows)) return false;
  for (const SeqSpan& span : batch.seqs)
    if (span.n_tokens != 1) return false;
  return batch.positions.size() == batch.seqs.size();
}

Status DecodeGraphs::allocate() {
  if (!x_.empty()) return Status::ok();
  const auto rows = static_cast<size_t>(kMaxRows) * sizeof(float);
  for (auto [buffer, width] : {std::pair{&x_, widths_.embd}, {&h_, widths_.embd}, {&qkv_, widths_.qkv},
                               {&attn_, widths_.attn}, {&mlp_, widths_.mlp}, {&ln_, widths_.ln}}) {
    const Status status = reserve(backend_, buffer, rows * static_cast<size_t>(width));
    if (!status.is_ok()) {
      for (Buffer* b : {&x_, &h_, &qkv_, &attn_, &mlp_, &ln_}) *b = Buffer();
      return status;
    }
  }
  return Status::ok();
}

void DecodeGraphs::record(Bucket& bucket, int32_t rows, KvPoolView pool, const Layers& layers,
                          const LayerScratch& scratch) {
  Status status = backend_.begin_capture(rows);
  if (status.is_ok()) {
    layers(bucket.batch, pool, rows, x_.f32(), scratch);
    status = backend_.end_capture();
  }
  // Every rank of the group answers, whatever happened here, so none waits for a missing peer.
  const bool everywhere = agree_ ? agree_(status.is_ok()) : status.is_ok();
  if (!everywhere) {
    recording_works_ = false;
    const std::string why = status.is_ok() ? "another TP rank could not record its graph" : status.to_string();
    std::fprintf(stderr, "kvmesh: decode graphs not recorded, decode steps run eagerly: %s\n", why.c_str());
    return;
  }
  bucket.recorded = true;
  ++n_recorded_;
}

Status DecodeGraphs::run(const BatchLayout& batch, KvPoolView pool, float* x, const Layers& layers) {
  if (x_.empty()) return internal_error("decode graphs run before their buffers were allocated");
  if (pool_data_ != pool.data) {  // a new pool: what was recorded points at the old one
    buckets_.clear();
    pool_data_ = pool.data;
  }
  const auto n = static_cast<int64_t>(batch.positions.size());
  const int32_t rows = bucket_rows(n);
  Bucket& bucket = buckets_[rows];
  bucket.batch.block_size = batch.block_size;
  bucket.batch.seqs = batch.seqs;
  bucket.batch.positions = batch.positions;
  bucket.batch.slots = batch.slots;
  bucket.batch.padded_rows = rows;
  bucket.batch.max_context = max_context_;
  backend_.prepare_batch(bucket.batch);
  const LayerScratch scratch{h_.f32(), qkv_.f32(), attn_.f32(), mlp_.f32(), ln_.f32()};
  if (!bucket.recorded && recording_works_) {
    if (bucket.warmed) record(bucket, rows, pool, layers, scratch);
    bucket.warmed = true;
  }
  const size_t bytes = static_cast<size_t>(n * widths_.embd) * sizeof(float);
  backend_.copy(x_.data(), x, bytes);
  if (bucket.recorded) {
    KVMESH_RETURN_IF_ERROR(backend_.replay(rows));
  } else {
    layers(bucket.batch, pool, rows, x_.f32(), scratch);  // the shapes a replaying peer runs
  }
  backend_.copy(x, x_.data(), bytes);
  return backend_.error_so_far();  // the step goes on to the head with the device still busy
}

}  // namespace kvmesh
