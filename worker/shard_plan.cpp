// ShardPlan: per-rank layers, heads, weight and KV bytes of a layout, by arithmetic alone.
#include "worker/shard_plan.h"

#include <algorithm>
#include <cstdio>

#include "worker/kv_quant.h"
#include "worker/weights.h"

namespace kvmesh {
namespace {

// Elements a rank owns when every parameter is counted exactly once: sharded matrices by their
// owner, replicated vectors by TP rank 0, embeddings by the first stage (real vocabulary rows only).
int64_t owned_elems(const ModelConfig& c, const ParallelLayout& l) {
  const int64_t e = c.n_embd, el = l.heads(c).size() * c.head_dim(), il = l.inner(c).size();
  const bool tp0 = l.tp_rank() == 0;
  int64_t per_layer = e * 3 * el + (c.qkv_bias ? 3 * el : 0) + el * e + e * il + il + il * e;
  if (tp0) per_layer += 4 * e /* ln_1, ln_2 */ + 2 * e /* attn_out and fc2 biases */;
  int64_t n = l.layers(c).size() * per_layer;
  if (l.first_stage()) {
    const Range v = l.vocab(c);
    n += std::max<int64_t>(0, std::min<int64_t>(v.end, c.vocab_size) - v.begin) * e;
    if (tp0) n += static_cast<int64_t>(c.n_positions + c.position_offset) * e;
  }
  if (l.last_stage() && tp0) n += 2 * e;
  if (l.last_stage() && !c.tied_head) {
    const Range v = l.vocab(c);
    n += std::max<int64_t>(0, std::min<int64_t>(v.end, c.vocab_size) - v.begin) * e;
  }
  return n;
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024.0 && u < 4) b /= 1024.0, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", b, units[u]);
  return buf;
}

}  // namespace

std::vector<RankShard> plan_shards(const ModelConfig& c, int tp, int pp, const CacheConfig& cache) {
  std::vector<RankShard> shards;
  for (int rank = 0; rank < tp * pp; ++rank) {
    const ParallelLayout l{tp, pp, rank};
    RankShard s;
    s.rank = rank;
    s.tp_rank = l.tp_rank();
    s.pp_rank = l.pp_rank();
    s.layers = l.layers(c);
    s.heads = l.heads(c);
    s.vocab_rows = (l.first_stage() || l.last_stage()) ? l.vocab(c) : Range{};
    s.weight_elems_held = shard_weight_elems(c, l);
    s.weight_elems_owned = owned_elems(c, l);
    s.kv_page_bytes = kv_page_bytes(cache.kv_dtype, static_cast<int>(s.layers.size()), cache.block_size,
                                    static_cast<int>(s.heads.size()), c.head_dim());
    s.kv_pages = s.kv_page_bytes > 0 ? cache.device_bytes / s.kv_page_bytes : 0;
    shards.push_back(s);
  }
  // Page ids are global: every rank holds as many pages as the tightest one.
  int64_t pages = shards.front().kv_pages;
  for (const auto& s : shards) pages = std::min(pages, s.kv_pages);
  for (auto& s : shards) s.kv_pages = pages;
  return shards;
}

std::string format_shard_plan(const ModelConfig& c, int tp, int pp, const CacheConfig& cache,
                              DType weight_dtype) {
  const auto shards = plan_shards(c, tp, pp, cache);
  const double wsize = static_cast<double>(dtype_size(weight_dtype));
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line,
                "dry run: %s (%.3f B parameters) on tp=%d x pp=%d, %s weights, %s KV pages of %d tokens\n",
                c.name.c_str(), static_cast<double>(c.n_params()) / 1e9, tp, pp, dtype_name(weight_dtype),
                dtype_name(cache.kv_dtype), cache.block_size);
  out += line;
  out += "rank  tp  pp  layers      heads     weights held    weights owned   KV page     KV pages  KV bytes\n";
  int64_t owned_total = 0;
  for (const auto& s : shards) {
    owned_total += s.weight_elems_owned;
    std::snprintf(line, sizeof line, "%4d %3d %3d  [%3lld,%3lld)  [%3lld,%3lld)  %14lld  %14lld  %-10s  %8lld  %s\n",
                  s.rank, s.tp_rank, s.pp_rank, static_cast<long long>(s.layers.begin),
                  static_cast<long long>(s.layers.end), static_cast<long long>(s.heads.begin),
                  static_cast<long long>(s.heads.end),
                  static_cast<long long>(s.weight_elems_held * static_cast<int64_t>(wsize)),
                  static_cast<long long>(s.weight_elems_owned * static_cast<int64_t>(wsize)),
                  human_bytes(static_cast<double>(s.kv_page_bytes)).c_str(),
                  static_cast<long long>(s.kv_pages),
                  human_bytes(static_cast<double>(s.kv_pages * s.kv_page_bytes)).c_str());
    out += line;
  }
  std::snprintf(line, sizeof line,
                "total weights owned: %lld bytes = %lld parameters x %d bytes (%s)\n",
                static_cast<long long>(owned_total * static_cast<int64_t>(wsize)),
                static_cast<long long>(owned_total), static_cast<int>(wsize),
                human_bytes(static_cast<double>(owned_total) * wsize).c_str());
  out += line;
  return out;
}

}  // namespace kvmesh
