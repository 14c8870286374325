// CPU paged attention: K/V writes into pages and causal attention over a ragged batch, each row over
// its whole context or its window (pages f32, bf16, f16 or i8; compute fp32). Work items and why
// results do not depend on the batch: docs/cpu.md.
#include "worker/cpu/cpu_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "worker/cpu/cpu_isa.h"
#include "worker/cpu/cpu_vector_math.h"
#include "worker/kv_quant.h"

namespace kvmesh {
namespace {

using namespace vector_math;

constexpr int32_t kKeyTile = 64;    // context positions read and converted together
constexpr int32_t kQueryRows = 32;  // rows of one sequence and head per work item

// One thread's buffers, grown as needed.
struct Scratch {
  std::vector<float> k_tile;          // [head_dim, kKeyTile]: the tile's keys, transposed
  std::vector<float> kv_tile;         // [kKeyTile, head_dim]: its keys, then values, converted
                                      // (pages other than f32)
  std::vector<const float*> kv_rows;  // [kKeyTile]: each position's key, then value, row
  std::vector<float> scores;          // [kQueryRows, context of the item's last row, in whole tiles]
  std::vector<float> sums;            // [kQueryRows]: each row's sum of unnormalised weights
};

// K (kv = 0) or V (kv = 1) of head h at context position j of a sequence, as fp32: a pointer into
// the page for f32, else converted into buf (head_dim floats).
inline const float* load_kv(const KvPoolView& pool, const SeqSpan& span, int32_t layer, int kv,
                            int32_t j, int32_t h, int64_t head_bytes, float* buf) {
  const int32_t page = span.block_table[j / pool.block_size];
  const int32_t offset = j % pool.block_size;
  const uint8_t* row = pool.row_ptr(page, layer, kv, offset);
  if (pool.dtype == DType::f32) return reinterpret_cast<const float*>(row) + h * pool.head_dim;
  const float scale = pool.dtype == DType::i8 ? pool.scales_ptr(page, layer, kv, offset)[h] : 0.0f;
  kv_load_head(pool.dtype, row + h * head_bytes, scale, pool.head_dim, buf);
  return buf;
}

// k_tile[c][i] = rows[i][c] for i < n, c < d: 16 x 16 blocks in registers, the edges one by one.
[[gnu::always_inline]] inline void transpose_keys(const float* const* rows, int32_t n, int32_t d, float* k_tile) {
  const int32_t n16 = n / 16 * 16, d16 = d / 16 * 16;
  for (int32_t i0 = 0; i0 < n16; i0 += 16) {
    for (int32_t c0 = 0; c0 < d16; c0 += 16) {
      Float16 m[16];
      for (int r = 0; r < 16; ++r) m[r] = load16(rows[i0 + r] + c0);
      transpose16(m);
      for (int c = 0; c < 16; ++c) store16(k_tile + static_cast<int64_t>(c0 + c) * kKeyTile + i0, m[c]);
    }
    for (int32_t i = i0; i < i0 + 16; ++i)
      for (int32_t c = d16; c < d; ++c) k_tile[static_cast<int64_t>(c) * kKeyTile + i] = rows[i][c];
  }
  for (int32_t i = n16; i < n; ++i)
    for (int32_t c = 0; c < d; ++c) k_tile[static_cast<int64_t>(c) * kKeyTile + i] = rows[i][c];
}

// out[i] = (sum over c ascending of q[c] * k_tile[c][i]) * scale, for all kKeyTile lanes (those
// past the tile's positions hold whatever the buffer held; callers ignore them).
static_assert(kKeyTile == 64);
[[gnu::always_inline]] inline void tile_scores(const float* q, const float* k_tile, int32_t d,
                                                float scale, float* out) {
  Float16 a0 = {}, a1 = {}, a2 = {}, a3 = {};
  for (int32_t c = 0; c < d; ++c) {
    const float qc = q[c];
    const float* kc = k_tile + static_cast<int64_t>(c) * kKeyTile;
    a0 += qc * load16(kc);
    a1 += qc * load16(kc + 16);
    a2 += qc * load16(kc + 32);
    a3 += qc * load16(kc + 48);
  }
  store16(out, a0 * scale);
  store16(out + 16, a1 * scale);
  store16(out + 32, a2 * scale);
  store16(out + 48, a3 * scale);
}

// p[0, n) = e^(p[0, n) - max) and returns their sum: the sum in 16 lanes (position j in lane
// j % 16, the lanes added as a fixed tree). p holds n rounded up to 16 floats; the lanes past n are
// read, ignored and left as zeros.
[[gnu::always_inline]] inline float exp_minus_max(float* p, int32_t n) {
  const int32_t n_whole = n / 16 * 16;
  float tail[16];
  std::fill_n(tail, 16, -INFINITY);
  std::copy(p + n_whole, p + n, tail);
  Float16 max16 = load16(tail);
  for (int32_t j = 0; j < n_whole; j += 16) {
    const Float16 v = load16(p + j);
    max16 = v > max16 ? v : max16;
  }
  float max_score = -INFINITY;
  for (int i = 0; i < 16; ++i) max_score = std::max(max_score, max16[i]);
  Float16 sum = {};
  for (int32_t j = 0; j < n_whole; j += 16) {
    const Float16 e = exp16(load16(p + j) - max_score);
    store16(p + j, e);
    sum += e;
  }
  if (n_whole < n) {  // the tail's lanes past n are e^-inf, clamped to ~1e-38: set to 0
    const Int16 lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    const Float16 e = exp16(load16(tail) - max_score);
    Int16 bits;
    std::memcpy(&bits, &e, sizeof bits);
    bits &= lane < (n - n_whole);
    Float16 live;
    std::memcpy(&live, &bits, sizeof live);
    store16(p + n_whole, live);
    sum += live;
  }
  return sum16(sum);
}

// o[c] += p[i] * v_rows[i][c] for i ascending over n positions, every c < d: 64 or 16 columns at a
// time held in registers across the positions, then one at a time.
[[gnu::always_inline]] inline void accumulate_values(const float* p, const float* const* v_rows,
                                                      int32_t n, int32_t d, float* o) {
  int32_t c0 = 0;
  for (; c0 + 64 <= d; c0 += 64) {
    Float16 a0 = load16(o + c0), a1 = load16(o + c0 + 16), a2 = load16(o + c0 + 32),
            a3 = load16(o + c0 + 48);
    for (int32_t i = 0; i < n; ++i) {
      const float pi = p[i];
      const float* v = v_rows[i] + c0;
      a0 += pi * load16(v);
      a1 += pi * load16(v + 16);
      a2 += pi * load16(v + 32);
      a3 += pi * load16(v + 48);
    }
    store16(o + c0, a0);
    store16(o + c0 + 16, a1);
    store16(o + c0 + 32, a2);
    store16(o + c0 + 48, a3);
  }
  for (; c0 + 16 <= d; c0 += 16) {
    Float16 a = load16(o + c0);
    for (int32_t i = 0; i < n; ++i) a += p[i] * load16(v_rows[i] + c0);
    store16(o + c0, a);
  }
  for (; c0 < d; ++c0) {
    float a = o[c0];
    for (int32_t i = 0; i < n; ++i) a += p[i] * v_rows[i][c0];
    o[c0] = a;
  }
}

// One work item: rows [t_begin, t_end) of `span` (batch rows, all of one sequence), head h.
struct Item {
  const KvPoolView& pool;
  const SeqSpan& span;
  int32_t layer, h, t_begin, t_end;
  const float* q_all;  // [T, 3E] qkv
  int64_t e;
  const AttentionSpec& spec;
  float* o_all;  // [T, E]
};

[[gnu::always_inline]] inline void attend_rows(const Item& item, Scratch& s) {
  const auto& [pool, span, layer, h, t_begin, t_end, q_all, e, spec, o_all] = item;
  const int32_t d = pool.head_dim;
  const float scale = spec.scale_for(d);
  const int64_t head_bytes = static_cast<int64_t>(d) * dtype_size(pool.dtype);
  const int32_t n_rows = t_end - t_begin;
  auto n_ctx = [&](int32_t r) { return span.n_past + (t_begin + r - span.token_begin) + 1; };  // causal
  auto lo = [&](int32_t r) { return spec.first_key(n_ctx(r) - 1); };  // first key the window keeps
  const int32_t max_ctx = n_ctx(n_rows - 1);
  const int32_t j_start = lo(0) / kKeyTile * kKeyTile;  // rows' windows start no earlier than row 0's
  s.k_tile.resize(static_cast<size_t>(d) * kKeyTile);
  s.kv_tile.resize(static_cast<size_t>(kKeyTile) * d);
  s.kv_rows.resize(kKeyTile);
  // Whole tiles per row, and 16 lanes more: exp_minus_max writes up to 16 past a row's last position.
  const int64_t stride = (max_ctx + kKeyTile - 1) / kKeyTile * kKeyTile + 16;
  s.scores.resize(static_cast<size_t>(n_rows * stride));
  auto query = [&](int32_t r) { return q_all + (t_begin + r) * 3 * e + h * d; };
  auto scores = [&](int32_t r) { return s.scores.data() + r * stride; };
  // kv_rows[i] = K (kv = 0) or V (kv = 1) of position j0 + i, i < n: pointers into f32 pages,
  // else rows converted into kv_tile.
  auto load_tile = [&](int kv, int32_t j0, int32_t n) {
    for (int32_t i = 0; i < n; ++i)
      s.kv_rows[i] = load_kv(pool, span, layer, kv, j0 + i, h, head_bytes,
                             s.kv_tile.data() + static_cast<int64_t>(i) * d);
  };

  for (int32_t j0 = j_start; j0 < max_ctx; j0 += kKeyTile) {
    const int32_t n = std::min(kKeyTile, max_ctx - j0);
    load_tile(0, j0, n);
    transpose_keys(s.kv_rows.data(), n, d, s.k_tile.data());
    for (int32_t r = 0; r < n_rows; ++r) {
      const int32_t n_r = std::min(n, n_ctx(r) - j0);
      if (n_r > 0 && j0 + kKeyTile > lo(r)) tile_scores(query(r), s.k_tile.data(), d, scale, scores(r) + j0);
    }
  }

  // Unnormalised weights e^(score - max) over each row's window; each output row is divided by
  // their sum at the end.
  s.sums.resize(static_cast<size_t>(n_rows));
  for (int32_t r = 0; r < n_rows; ++r) {
    s.sums[r] = exp_minus_max(scores(r) + lo(r), n_ctx(r) - lo(r));
    std::fill_n(o_all + (t_begin + r) * e + h * d, d, 0.0f);
  }

  for (int32_t j0 = j_start; j0 < max_ctx; j0 += kKeyTile) {
    const int32_t n = std::min(kKeyTile, max_ctx - j0);
    load_tile(1, j0, n);
    for (int32_t r = 0; r < n_rows; ++r) {
      const int32_t a = std::max(j0, lo(r)), b = std::min(j0 + n, n_ctx(r));
      if (b > a)
        accumulate_values(scores(r) + a, s.kv_rows.data() + (a - j0), b - a, d, o_all + (t_begin + r) * e + h * d);
    }
  }
  for (int32_t r = 0; r < n_rows; ++r) {
    float* o = o_all + (t_begin + r) * e + h * d;
    for (int32_t c = 0; c < d; ++c) o[c] /= s.sums[r];
  }
}

// attend_rows for each vector width of cpu_isa.h.
KVMESH_TARGET_AVX512 void attend_rows_avx512(const Item& item, Scratch& s) { attend_rows(item, s); }
KVMESH_TARGET_AVX2 void attend_rows_avx2(const Item& item, Scratch& s) { attend_rows(item, s); }
void attend_rows_plain(const Item& item, Scratch& s) { attend_rows(item, s); }

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
                         KvPoolView pool, TensorView out, const AttentionSpec& spec) {
  const int32_t n_heads = pool.n_heads, d = pool.head_dim;
  const int64_t e = static_cast<int64_t>(n_heads) * d;
  // Work items: (sequence, first row, end row) x head.
  struct Rows {
    int32_t seq;
    int32_t begin, end;  // rows in the batch
  };
  std::vector<Rows> blocks;
  int64_t work_estimate = 0;  // multiply-adds, to skip threading tiny steps
  for (int32_t s = 0; s < static_cast<int32_t>(batch.seqs.size()); ++s) {
    const SeqSpan& span = batch.seqs[s];
    for (int32_t i = 0; i < span.n_tokens; i += kQueryRows)
      blocks.push_back({s, span.token_begin + i, span.token_begin + std::min(span.n_tokens, i + kQueryRows)});
    work_estimate += static_cast<int64_t>(span.n_tokens) * (span.n_past + span.n_tokens) * e;
  }
  const int64_t n_work = static_cast<int64_t>(blocks.size()) * n_heads;
  const float* q_all = qkv.f32();
  float* o_all = out.f32();
  auto* attend = for_cpu_isa(&attend_rows_avx512, &attend_rows_avx2, &attend_rows_plain);
#pragma omp parallel if (work_estimate > (1 << 18))
  {
    thread_local Scratch scratch;  // kept by the pool's threads across calls
#pragma omp for schedule(dynamic, 1)
    for (int64_t w = 0; w < n_work; ++w) {
      const Rows& rows = blocks[w / n_heads];
      attend({pool, batch.seqs[rows.seq], layer, static_cast<int32_t>(w % n_heads), rows.begin,
              rows.end, q_all, e, spec, o_all},
             scratch);
    }
  }
}

}  // namespace kvmesh
