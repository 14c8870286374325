// kvmesh-plan: which TP x PP layouts of a model fit a GPU cluster, with weights and KV pages per
// GPU, concurrent sequences at a context length and the decode floor from memory bandwidth.
// Exit 0 when some layout fits, 1 when none does or the model cannot be read, 2 for bad flags.
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "common/cli_parse.h"
#include "common/synthetic_models.h"
#include "common/byte_size.h"
#include "tools/cluster_plan.h"

namespace kvmesh {
namespace {

struct RawOptions {
  std::string model;
  std::string gpu_mem = "141GiB";
  std::string mem_bandwidth = "4.8TB/s";
  std::string weight_dtype = "bf16";
  std::string kv_dtype = "bf16";
  bool show_all = false;
  bool json = false;
};

void add_flags(CLI::App& app, RawOptions& raw, PlanOptions& o) {
  app.add_option("--model", raw.model, "Checkpoint directory (config.json) or synthetic:<shape>, e.g. synthetic:gpt3-175b")
      ->required();
  app.add_option("--nodes", o.cluster.nodes, "Nodes")->check(CLI::Range(1, 100000))->capture_default_str();
  app.add_option("--gpus-per-node", o.cluster.gpus_per_node, "GPUs per node (a TP group stays in one node)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--gpu-mem", raw.gpu_mem, "Memory of one GPU, with a unit (141GiB, 80GB)")->capture_default_str();
  app.add_option("--mem-bandwidth", raw.mem_bandwidth, "Memory bandwidth of one GPU (4.8TB/s, 3.35TB/s)")
      ->capture_default_str();
  app.add_option("--reserve", o.cluster.reserve, "Fraction of GPU memory kept for activations and the runtime")
      ->check(CLI::Range(0.0, 0.99))
      ->capture_default_str();
  app.add_option("--context", o.context, "Tokens per sequence (default: the model's positions)")
      ->check(CLI::Range(1, 1 << 24));
  app.add_option("--weight-dtype", raw.weight_dtype, "Weight dtype: bf16, fp16, fp32")->capture_default_str();
  app.add_option("--kv-dtype", raw.kv_dtype, "KV cache dtype, as kvmesh-serve takes it: bf16, f16, f32 or i8")
      ->capture_default_str();
  app.add_option("--block-size", o.block_size, "Tokens per KV page")->check(CLI::Range(1, 4096))->capture_default_str();
  app.add_option("--tp", o.only_tp, "Only layouts with this TP")->check(CLI::Range(1, 1024));
  app.add_option("--pp", o.only_pp, "Only layouts with this PP")->check(CLI::Range(1, 1024));
  app.add_flag("--all", raw.show_all, "Also list the layouts that do not fit, with the reason");
  app.add_flag("--json", raw.json, "Print every layout as JSON, with exact byte counts");
}

// Turns the text flags into PlanOptions fields; a message naming the flag on error.
Status apply_raw(const RawOptions& raw, PlanOptions& o) {
  auto mem = parse_byte_size(raw.gpu_mem);
  if (!mem.is_ok()) return mem.status().with_context("--gpu-mem");
  o.cluster.gpu_mem_bytes = *mem;
  auto bw = parse_bandwidth(raw.mem_bandwidth);
  if (!bw.is_ok()) return bw.status().with_context("--mem-bandwidth");
  o.cluster.mem_bandwidth = *bw;
  if (!parse_dtype(raw.weight_dtype, &o.weight_dtype)) return invalid_argument("--weight-dtype: unknown dtype '" + raw.weight_dtype + "'");
  if (!parse_kv_dtype(raw.kv_dtype, &o.kv_dtype)) {
    std::string names;
    for (const std::string& n : kv_dtype_names()) names += (names.empty() ? "" : ", ") + n;
    return invalid_argument("--kv-dtype: '" + raw.kv_dtype + "' is not one of " + names);
  }
  return Status::ok();
}

int fail(int code, const std::string& message) {
  std::fprintf(stderr, "kvmesh-plan: %s\n", message.c_str());
  return code;
}

}  // namespace
}  // namespace kvmesh

int main(int argc, char** argv) {
  using namespace kvmesh;
  CLI::App app{"Lists the TP x PP layouts of a model that fit a GPU cluster, with per-GPU weights, KV pages, "
               "concurrent sequences and the decode floor from memory bandwidth.",
               "kvmesh-plan"};
  RawOptions raw;
  PlanOptions options;
  add_flags(app, raw, options);
  if (const CliOutcome parsed = parse_cli(app, argc, argv, "kvmesh-plan"); parsed.exit_code >= 0) {
    std::fprintf(parsed.exit_code == 0 ? stdout : stderr, "%s\n", parsed.message.c_str());
    return parsed.exit_code;
  }
  if (Status s = apply_raw(raw, options); !s.is_ok()) return fail(2, s.message());
  auto config = resolve_model_config(raw.model);
  if (!config.is_ok()) return fail(1, config.status().message());
  auto plans = plan_cluster(*config, options);
  if (!plans.is_ok()) return fail(2, plans.status().message());
  const std::string text = raw.json ? cluster_plan_json(*config, options, *plans)
                                    : format_cluster_plan(*config, options, *plans, raw.show_all);
  std::fputs(text.c_str(), stdout);
  for (const LayoutPlan& p : *plans) {
    if (p.fits) return 0;
  }
  return 1;
}
