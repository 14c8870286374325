// ClusterPlan: layouts that fit a cluster, per-GPU bytes from plan_shards(), the decode floor from
// memory bandwidth, and the table / JSON kvmesh-plan prints.
#include "tools/cluster_plan.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <limits>

#include <nlohmann/json.hpp>

#include "common/byte_size.h"
#include "worker/kv_quant.h"
#include "worker/parallel.h"
#include "worker/shard_plan.h"

namespace kvmesh {
namespace {

// Bytes of the embedding tables a decode step only gathers rows from: wpe (first stage), and wte
// on a first stage that is not also the last (the last stage reads all of wte as the LM head).
int64_t gathered_only_elems(const ModelConfig& c, const RankShard& s, int pp) {
  if (s.pp_rank != 0) return 0;
  int64_t n = static_cast<int64_t>(c.n_positions) * c.n_embd;
  if (pp > 1) n += s.vocab_rows.size() * c.n_embd;
  return n;
}

// Fills the byte counts of one layout from the per-rank shards.
LayoutPlan measure_layout(const ModelConfig& c, const PlanOptions& o, int tp, int pp) {
  LayoutPlan p;
  p.tp = tp;
  p.pp = pp;
  const int groups_per_node = o.cluster.gpus_per_node / tp;
  p.nodes_used = (pp + groups_per_node - 1) / groups_per_node;
  p.usable_bytes = static_cast<int64_t>(std::floor(static_cast<double>(o.cluster.gpu_mem_bytes) *
                                                   (1.0 - o.cluster.reserve)));
  CacheConfig cache;
  cache.block_size = o.block_size;
  cache.kv_dtype = o.kv_dtype;
  cache.device_bytes = 0;  // pages are sized here, per rank, from what its weights leave free
  const auto shards = plan_shards(c, tp, pp, cache);
  const int64_t wsize = static_cast<int64_t>(dtype_size(o.weight_dtype));
  std::vector<int64_t> stage_decode(static_cast<size_t>(pp), 0);
  int64_t pages = std::numeric_limits<int64_t>::max();
  for (const RankShard& s : shards) {
    const int64_t held = s.weight_elems_held * wsize;
    p.weight_bytes_max = std::max(p.weight_bytes_max, held);
    p.kv_page_bytes_max = std::max(p.kv_page_bytes_max, s.kv_page_bytes);
    pages = std::min(pages, std::max<int64_t>(0, p.usable_bytes - held) / s.kv_page_bytes);
    const int64_t decode = (s.weight_elems_held - gathered_only_elems(c, s, pp)) * wsize;
    int64_t& stage = stage_decode[static_cast<size_t>(s.pp_rank)];
    stage = std::max(stage, decode);
  }
  p.kv_pages = pages;
  p.kv_bytes_max = pages * p.kv_page_bytes_max;
  const int context = o.context > 0 ? o.context : c.n_positions;
  p.pages_per_seq = (context + o.block_size - 1) / o.block_size;
  p.max_seqs = p.kv_pages / p.pages_per_seq;
  for (int64_t b : stage_decode) p.decode_bytes += b;
  p.decode_floor_s = o.cluster.mem_bandwidth > 0 ? static_cast<double>(p.decode_bytes) / o.cluster.mem_bandwidth : 0.0;
  return p;
}

std::string gib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / 1073741824.0);
  return buf;
}

std::string mib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f MiB", bytes / 1048576.0);
  return buf;
}

void judge_fit(LayoutPlan& p) {
  p.fits = false;
  if (p.weight_bytes_max >= p.usable_bytes) {
    p.why_not = "weights " + gib(static_cast<double>(p.weight_bytes_max)) + " per GPU exceed the " +
                gib(static_cast<double>(p.usable_bytes)) + " usable";
  } else if (p.max_seqs < 1) {
    p.why_not = "KV room for " + std::to_string(p.kv_pages) + " pages, one sequence needs " +
                std::to_string(p.pages_per_seq);
  } else {
    p.fits = true;
    p.why_not.clear();
  }
}

Status validate_options(const ModelConfig& c, const PlanOptions& o) {
  const ClusterSpec& k = o.cluster;
  if (k.nodes < 1 || k.gpus_per_node < 1) return invalid_argument("--nodes and --gpus-per-node must be >= 1");
  if (k.gpu_mem_bytes < 1) return invalid_argument("--gpu-mem must be positive");
  if (!(k.mem_bandwidth > 0.0)) return invalid_argument("--mem-bandwidth must be positive");
  if (!(k.reserve >= 0.0 && k.reserve < 1.0)) return invalid_argument("--reserve must be in [0, 1)");
  if (o.block_size < 1) return invalid_argument("--block-size must be >= 1");
  if (o.context < 0 || o.context > c.n_positions) {
    return invalid_argument("--context " + std::to_string(o.context) + " exceeds the model's " +
                            std::to_string(c.n_positions) + " positions");
  }
  const DType w = o.weight_dtype;
  if (w != DType::f32 && w != DType::f16 && w != DType::bf16) {
    return invalid_argument(std::string("weight dtype ") + dtype_name(w) + " is not planned (use fp32, fp16 or bf16)");
  }
  if (!kv_dtype_supported(o.kv_dtype)) {
    return invalid_argument(std::string("KV dtype ") + dtype_name(o.kv_dtype) + " is not planned (use f32, bf16, f16 or i8)");
  }
  return Status::ok();
}

}  // namespace

Result<std::vector<LayoutPlan>> plan_cluster(const ModelConfig& c, const PlanOptions& o) {
  KVMESH_RETURN_IF_ERROR(validate_options(c, o));
  std::vector<LayoutPlan> plans;
  for (int tp = 1; tp <= o.cluster.gpus_per_node; ++tp) {
    if (c.n_head % tp != 0 || c.n_inner % tp != 0) continue;
    if (o.only_tp > 0 && tp != o.only_tp) continue;
    const int max_pp = std::min(c.n_layer, o.cluster.nodes * (o.cluster.gpus_per_node / tp));
    for (int pp = 1; pp <= max_pp; ++pp) {
      if (o.only_pp > 0 && pp != o.only_pp) continue;
      LayoutPlan p = measure_layout(c, o, tp, pp);
      judge_fit(p);
      plans.push_back(std::move(p));
    }
  }
  std::stable_sort(plans.begin(), plans.end(), [](const LayoutPlan& a, const LayoutPlan& b) {
    return a.gpus() != b.gpus() ? a.gpus() < b.gpus() : a.tp > b.tp;
  });
  return plans;
}

namespace {

std::string header_text(const ModelConfig& c, const PlanOptions& o) {
  const ClusterSpec& k = o.cluster;
  const int context = o.context > 0 ? o.context : c.n_positions;
  char buf[1024];
  std::snprintf(buf, sizeof buf,
                "model %s: %lld parameters (%d layers, %d heads x %d, d_model %d, vocab %d), %s weights\n"
                "cluster: %d node(s) x %d GPUs, %s each (%.0f%% reserved: %s usable for weights + KV), "
                "%.3g TB/s memory bandwidth\n"
                "KV: %s, pages of %d tokens; context %d tokens = %lld pages per sequence\n\n",
                c.name.c_str(), static_cast<long long>(c.n_params()), c.n_layer, c.n_head, c.head_dim(),
                c.n_embd, c.vocab_size, dtype_name(o.weight_dtype), k.nodes, k.gpus_per_node,
                gib(static_cast<double>(k.gpu_mem_bytes)).c_str(), k.reserve * 100.0,
                gib(std::floor(static_cast<double>(k.gpu_mem_bytes) * (1.0 - k.reserve))).c_str(),
                k.mem_bandwidth / 1e12, dtype_name(o.kv_dtype), o.block_size, context,
                static_cast<long long>((context + o.block_size - 1) / o.block_size));
  return buf;
}

std::string row_text(const LayoutPlan& p) {
  char buf[512];
  const double ms = p.decode_floor_s * 1e3;
  std::snprintf(buf, sizeof buf, "%2d x %-3d %5d %6d  %12s  %12s  %10s  %9lld  %8lld  %10.2f  %9.1f  %s\n",
                p.tp, p.pp, p.gpus(), p.nodes_used, gib(static_cast<double>(p.weight_bytes_max)).c_str(),
                gib(static_cast<double>(p.kv_bytes_max)).c_str(),
                mib(static_cast<double>(p.kv_page_bytes_max)).c_str(), static_cast<long long>(p.kv_pages),
                static_cast<long long>(p.max_seqs), ms, ms > 0 ? 1e3 / ms : 0.0,
                p.fits ? "" : ("does not fit: " + p.why_not).c_str());
  std::string row = buf;
  while (row.size() > 1 && row[row.size() - 2] == ' ') row.erase(row.size() - 2, 1);  // no trailing blanks
  return row;
}

// The fitting layouts that stand out: fewest GPUs, lowest decode floor, most sequences.
std::string summary_text(const std::vector<LayoutPlan>& plans) {
  const LayoutPlan *fewest = nullptr, *fastest = nullptr, *widest = nullptr;
  for (const LayoutPlan& p : plans) {
    if (!p.fits) continue;
    if (!fewest || p.gpus() < fewest->gpus()) fewest = &p;
    if (!fastest || p.decode_bytes < fastest->decode_bytes ||
        (p.decode_bytes == fastest->decode_bytes && p.gpus() < fastest->gpus())) fastest = &p;
    if (!widest || p.max_seqs > widest->max_seqs) widest = &p;
  }
  if (!fewest) return "";
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "fewest GPUs: %d x %d on %d GPU(s); lowest decode floor: %d x %d (%.2f ms/token, %d GPUs); "
                "most sequences: %d x %d (%lld at the context, %d GPUs)\n",
                fewest->tp, fewest->pp, fewest->gpus(), fastest->tp, fastest->pp, fastest->decode_floor_s * 1e3,
                fastest->gpus(), widest->tp, widest->pp, static_cast<long long>(widest->max_seqs), widest->gpus());
  return buf;
}

constexpr const char* kFormulas =
    "per GPU = the fullest rank of the layout (first/last PP stages also hold the embedding).\n"
    "KV pages = min over ranks of (usable - weights held) / page bytes, page bytes = layers x 2 (K,V) x\n"
    "  block_size x local heads x head_dim x KV dtype size; max seqs = KV pages / pages per sequence.\n"
    "decode floor = sum over PP stages of max over the stage's TP ranks of (weight bytes held - rows\n"
    "  only gathered: wpe, and wte on a first stage that is not also the last) / memory bandwidth.\n"
    "  A token passes the stages one after another, so PP does not lower it and TP divides it; KV reads\n"
    "  (2 x layers x context x d_model x KV dtype size per sequence, over tp) and compute come on top.\n"
    "  tok/s/seq = 1 / floor: the most one sequence can decode; PP adds concurrent sequences, not speed.\n";

}  // namespace

std::string format_cluster_plan(const ModelConfig& c, const PlanOptions& o, const std::vector<LayoutPlan>& plans,
                                bool show_all) {
  std::string out = header_text(c, o);
  out += "tp x pp   GPUs  nodes  weights/GPU        KV/GPU     KV page   KV pages  max seqs  "
         "floor ms/tok  tok/s/seq\n";
  const int fitting = static_cast<int>(std::count_if(plans.begin(), plans.end(), [](const LayoutPlan& p) { return p.fits; }));
  for (const LayoutPlan& p : plans) {
    if (p.fits || show_all || fitting == 0) out += row_text(p);
  }
  if (plans.empty()) out += "(no layout: tp must divide the heads and fit in a node)\n";
  char buf[128];
  std::snprintf(buf, sizeof buf, "\n%d of %zu layouts fit.%s\n", fitting, plans.size(),
                fitting == 0 ? " Add GPUs, or lower --context or --reserve." : "");
  out += buf;
  out += summary_text(plans);
  out += kFormulas;
  return out;
}

std::string cluster_plan_json(const ModelConfig& c, const PlanOptions& o, const std::vector<LayoutPlan>& plans) {
  nlohmann::json layouts = nlohmann::json::array();
  for (const LayoutPlan& p : plans) {
    layouts.push_back({{"tp", p.tp}, {"pp", p.pp}, {"gpus", p.gpus()}, {"nodes", p.nodes_used},
                       {"usable_bytes", p.usable_bytes}, {"weight_bytes_max", p.weight_bytes_max},
                       {"kv_page_bytes_max", p.kv_page_bytes_max}, {"kv_pages", p.kv_pages},
                       {"kv_bytes_max", p.kv_bytes_max}, {"pages_per_seq", p.pages_per_seq},
                       {"max_seqs", p.max_seqs}, {"decode_bytes", p.decode_bytes},
                       {"decode_floor_ms", p.decode_floor_s * 1e3}, {"fits", p.fits}, {"why_not", p.why_not}});
  }
  const nlohmann::json j = {{"model", c.name},
                            {"n_params", c.n_params()},
                            {"context", o.context > 0 ? o.context : c.n_positions},
                            {"weight_dtype", dtype_name(o.weight_dtype)},
                            {"kv_dtype", dtype_name(o.kv_dtype)},
                            {"block_size", o.block_size},
                            {"gpu_mem_bytes", o.cluster.gpu_mem_bytes},
                            {"mem_bandwidth", o.cluster.mem_bandwidth},
                            {"layouts", layouts}};
  return j.dump(2) + "\n";
}

Result<double> parse_bandwidth(const std::string& text) {
  std::string size = text;
  while (!size.empty() && std::isspace(static_cast<unsigned char>(size.back()))) size.pop_back();
  if (size.size() > 2) {
    const std::string tail = size.substr(size.size() - 2);
    if (tail == "/s" || tail == "/S") size.resize(size.size() - 2);
  }
  auto bytes = parse_byte_size(size);
  if (!bytes.is_ok()) {
    return invalid_argument("'" + text + "' is not a bandwidth (examples: 4.8TB/s, 3350GB/s, 900GB/s)");
  }
  if (*bytes <= 0) return invalid_argument("bandwidth '" + text + "' must be positive");
  return static_cast<double>(*bytes);
}

}  // namespace kvmesh
