// ShardPlan: what each rank of a TP x PP layout would hold (layers, heads, weight and KV bytes),
// computed without loading or allocating anything. Backs --dry-run and capacity planning.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/config.h"
#include "worker/parallel.h"

namespace kvmesh {

struct RankShard {
  int rank = 0, tp_rank = 0, pp_rank = 0;
  Range layers, heads, vocab_rows;
  int64_t weight_elems_held = 0;   // what the rank stores (replicated LayerNorms and biases included)
  int64_t weight_elems_owned = 0;  // its share when each parameter is counted once in the grid
  int64_t kv_page_bytes = 0;       // one page of this rank's layers and heads
  int64_t kv_pages = 0;            // pages its budget holds
};

// weight_dtype sizes the weights; cache sizes the KV pages (its device budget per rank).
std::vector<RankShard> plan_shards(const ModelConfig& config, int tp, int pp, const CacheConfig& cache);

// A table of the plan, one line per rank, with totals.
std::string format_shard_plan(const ModelConfig& config, int tp, int pp, const CacheConfig& cache,
                              DType weight_dtype);

}  // namespace kvmesh
