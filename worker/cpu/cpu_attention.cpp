// CPU paged attention: K/V writes into pages and causal attention over a ragged batch. Pages hold
// f32, bf16, f16 or i8 (+ scales); compute is fp32: rows are converted on write and on read.
#include "worker/cpu/cpu_attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "worker/kv_quant.h"

namespace kvmesh {
namespace {

// K (kv = 0) or V (kv = 1) of head h at context position j of a sequence, as fp32: a pointer into
// the page for f32, else converted into buf (head_dim floats).
inline const float* load_kv(const KvPoolView& pool, const SeqSpan& span, int32_t layer, int kv,
                            int32_t j, int32_t h, float* buf) {
  const int32_t page = span.block_table[j / pool.block_size];
  const int32_t offset = j % pool.block_size;
  const uint8_t* row = pool.row_ptr(page, layer, kv, offset);
  const int64_t head_bytes = static_cast<int64_t>(pool.head_dim) * dtype_size(pool.dtype);
  if (pool.dtype == DType::f32) return reinterpret_cast<const float*>(row) + h * pool.head_dim;
  const float scale = pool.dtype == DType::i8 ? pool.scales_ptr(page, layer, kv, offset)[h] : 0.0f;
  kv_load_head(pool.dtype, row + h * head_bytes, scale, pool.head_dim, buf);
  return buf;
}

// Causal attention of one query head over n_ctx context positions. o: [head_dim]
void attend_one(const KvPoolView& pool, const SeqSpan& span, int32_t layer, int32_t h,
                int32_t n_ctx, const float* q, float scale, std::vector<float>& scores,
                std::vector<float>& buf, float* o) {
  const int32_t d = pool.head_dim;
  scores.resize(static_cast<size_t>(n_ctx));
  buf.resize(static_cast<size_t>(d));
  float max_score = -INFINITY;
  for (int32_t j = 0; j < n_ctx; ++j) {
    const float* k = load_kv(pool, span, layer, 0, j, h, buf.data());
    float dot = 0.0f;
    for (int32_t c = 0; c < d; ++c) dot += q[c] * k[c];
    scores[j] = dot * scale;
    max_score = std::max(max_score, scores[j]);
  }
  float sum = 0.0f;
  for (int32_t j = 0; j < n_ctx; ++j) {
    scores[j] = std::exp(scores[j] - max_score);
    sum += scores[j];
  }
  std::fill_n(o, d, 0.0f);
  for (int32_t j = 0; j < n_ctx; ++j) {
    const float* v = load_kv(pool, span, layer, 1, j, h, buf.data());
    const float p = scores[j] / sum;
    for (int32_t c = 0; c < d; ++c) o[c] += p * v[c];
  }
}

}  // namespace

void cpu_kv_write(const TensorView& qkv, const BatchLayout& batch, int32_t layer, KvPoolView pool) {
  // Rows past the layout's tokens (a graph's padding) write nothing.
  const int64_t n = std::min<int64_t>(qkv.dim(0), static_cast<int64_t>(batch.slots.size()));
  const int64_t e = static_cast<int64_t>(pool.n_heads) * pool.head_dim;
  const float* src = qkv.f32();
  const bool i8 = pool.dtype == DType::i8;
  for (int64_t t = 0; t < n; ++t) {
    const int32_t page = batch.slots[t] / pool.block_size;
    const int32_t offset = batch.slots[t] % pool.block_size;
    for (int kv = 0; kv < 2; ++kv) {
      kv_store_row(pool.dtype, src + t * 3 * e + (kv + 1) * e, pool.n_heads, pool.head_dim,
                   pool.row_ptr(page, layer, kv, offset),
                   i8 ? pool.scales_ptr(page, layer, kv, offset) : nullptr);
    }
  }
}

void cpu_paged_attention(const TensorView& qkv, const BatchLayout& batch, int32_t layer,
                         KvPoolView pool, TensorView out) {
  const int32_t n_heads = pool.n_heads, d = pool.head_dim;
  const int64_t e = static_cast<int64_t>(n_heads) * d;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  // Work items: (sequence, token, head).
  struct Item {
    int32_t seq;
    int32_t t;  // row in the batch
  };
  std::vector<Item> items;
  items.reserve(static_cast<size_t>(qkv.dim(0)));
  for (int32_t s = 0; s < static_cast<int32_t>(batch.seqs.size()); ++s) {
    const SeqSpan& span = batch.seqs[s];
    for (int32_t i = 0; i < span.n_tokens; ++i) items.push_back({s, span.token_begin + i});
  }
  const int64_t n_work = static_cast<int64_t>(items.size()) * n_heads;
  const float* q_all = qkv.f32();
  float* o_all = out.f32();
  int64_t work_estimate = 0;  // multiply-adds, to skip threading tiny steps
  for (const SeqSpan& span : batch.seqs)
    work_estimate += static_cast<int64_t>(span.n_tokens) * (span.n_past + span.n_tokens) * e;
#pragma omp parallel if (work_estimate > (1 << 18))
  {
    std::vector<float> scores, buf;
#pragma omp for schedule(dynamic, 4)
    for (int64_t w = 0; w < n_work; ++w) {
      const Item& item = items[w / n_heads];
      const int32_t h = static_cast<int32_t>(w % n_heads);
      const SeqSpan& span = batch.seqs[item.seq];
      const int32_t n_ctx = span.n_past + (item.t - span.token_begin) + 1;  // causal
      attend_one(pool, span, layer, h, n_ctx, q_all + item.t * 3 * e + h * d, scale, scores, buf,
                 o_all + item.t * e + h * d);
    }
  }
}

}  // namespace kvmesh
