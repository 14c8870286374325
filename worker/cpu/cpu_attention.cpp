// CPU paged attention: K/V writes into pages and causal attention over a ragged batch (fp32 pages).
#include "worker/cpu/cpu_attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace kvmesh {
namespace {

// Pointer to K (kv = 0) or V (kv = 1) of one token slot and head 0 in a page.
inline float* kv_ptr(const KvPoolView& pool, int32_t page, int32_t layer, int kv, int32_t offset) {
  const int64_t row = static_cast<int64_t>(pool.n_heads) * pool.head_dim;
  float* base = static_cast<float*>(pool.data) + static_cast<int64_t>(page) * pool.page_elems();
  return base + ((static_cast<int64_t>(layer) * 2 + kv) * pool.block_size + offset) * row;
}

}  // namespace

void cpu_kv_write(const TensorView& qkv, const BatchLayout& batch, int32_t layer, KvPoolView pool) {
  const int64_t n = qkv.dim(0);
  const int64_t e = static_cast<int64_t>(pool.n_heads) * pool.head_dim;
  const float* src = qkv.f32();
  for (int64_t t = 0; t < n; ++t) {
    const int32_t page = batch.slots[t] / pool.block_size;
    const int32_t offset = batch.slots[t] % pool.block_size;
    std::copy_n(src + t * 3 * e + e, e, kv_ptr(pool, page, layer, 0, offset));
    std::copy_n(src + t * 3 * e + 2 * e, e, kv_ptr(pool, page, layer, 1, offset));
  }
}

void cpu_paged_attention(const TensorView& qkv, const BatchLayout& batch, int32_t layer,
                         KvPoolView pool, TensorView out) {
  const int32_t n_heads = pool.n_heads, d = pool.head_dim, bs = pool.block_size;
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
    std::vector<float> scores;
#pragma omp for schedule(dynamic, 4)
    for (int64_t w = 0; w < n_work; ++w) {
      const Item& item = items[w / n_heads];
      const int32_t h = static_cast<int32_t>(w % n_heads);
      const SeqSpan& span = batch.seqs[item.seq];
      const int32_t n_ctx = span.n_past + (item.t - span.token_begin) + 1;  // causal
      const float* q = q_all + item.t * 3 * e + h * d;
      scores.resize(static_cast<size_t>(n_ctx));
      float max_score = -INFINITY;
      for (int32_t j = 0; j < n_ctx; ++j) {
        const float* k = kv_ptr(pool, span.block_table[j / bs], layer, 0, j % bs) + h * d;
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
      float* o = o_all + item.t * e + h * d;
      std::fill_n(o, d, 0.0f);
      for (int32_t j = 0; j < n_ctx; ++j) {
        const float* v = kv_ptr(pool, span.block_table[j / bs], layer, 1, j % bs) + h * d;
        const float p = scores[j] / sum;
        for (int32_t c = 0; c < d; ++c) o[c] += p * v[c];
      }
    }
  }
}

}  // namespace kvmesh
