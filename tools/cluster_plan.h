// ClusterPlan: which TP x PP layouts of a model fit a GPU cluster, and what each gives per GPU
// (weights, KV pages, concurrent sequences at a context length, decode-step floor from memory
// bandwidth). Arithmetic only, over plan_shards(); backs kvmesh-plan.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/status.h"
#include "common/tensor.h"

namespace kvmesh {

struct ClusterSpec {
  int nodes = 1;
  int gpus_per_node = 8;
  int64_t gpu_mem_bytes = 0;    // memory of one GPU
  double mem_bandwidth = 0.0;   // bytes/s of one GPU's memory
  double reserve = 0.10;        // fraction of gpu_mem_bytes kept for activations and the runtime
  int total_gpus() const { return nodes * gpus_per_node; }
};

struct PlanOptions {
  ClusterSpec cluster;
  int context = 0;              // tokens per sequence (0: the model's n_positions)
  DType weight_dtype = DType::bf16;
  DType kv_dtype = DType::bf16;
  int block_size = 16;
  int only_tp = 0, only_pp = 0; // 0: every value
};

struct LayoutPlan {
  int tp = 1, pp = 1;
  int nodes_used = 1;
  int64_t usable_bytes = 0;       // per GPU: gpu_mem * (1 - reserve)
  int64_t weight_bytes_max = 0;   // weights held by the fullest rank
  int64_t kv_page_bytes_max = 0;  // one page on the rank with the most layers
  int64_t kv_pages = 0;           // pages every rank holds (page ids are global: the tightest rank)
  int64_t kv_bytes_max = 0;       // kv_pages * kv_page_bytes_max
  int64_t pages_per_seq = 0;      // ceil(context / block_size)
  int64_t max_seqs = 0;           // kv_pages / pages_per_seq
  int64_t decode_bytes = 0;       // bytes one decode step reads, summed over the PP stages
  double decode_floor_s = 0.0;    // decode_bytes / mem_bandwidth
  bool fits = false;
  std::string why_not;            // when !fits
  int gpus() const { return tp * pp; }
};

// Every layout with tp dividing the heads and the MLP width, tp <= gpus_per_node (a TP group stays
// in a node: floor(gpus_per_node / tp) groups per node), pp <= n_layer, tp * pp <= the GPUs those
// groups use. Fitting or not, sorted by GPUs then tp (descending).
Result<std::vector<LayoutPlan>> plan_cluster(const ModelConfig& config, const PlanOptions& options);

// The table kvmesh-plan prints (fitting layouts only unless show_all), with the formulas used.
std::string format_cluster_plan(const ModelConfig& config, const PlanOptions& options,
                                const std::vector<LayoutPlan>& plans, bool show_all);
// The same as JSON (every layout, with exact byte counts).
std::string cluster_plan_json(const ModelConfig& config, const PlanOptions& options,
                              const std::vector<LayoutPlan>& plans);

// "4.8TB/s", "900GB/s", "2039 GB/s" -> bytes per second (decimal TB/GB; TiB/GiB binary).
Result<double> parse_bandwidth(const std::string& text);

}  // namespace kvmesh
