// gpu_decode_bench: decode tokens/s of the CUDA engine for a synthetic model (default the GPT-2 XL
// shape: 48 layers, 1600 wide, 25 heads) in bf16 at several batch sizes, beside the roofline
// (bf16 weight bytes read per step / measured device copy bandwidth) and the share of it reached,
// with decode steps replayed from CUDA graphs and, beside them, the same graphs with the products of
// up to 8 rows through cuBLAS instead of the few-rows kernel, the same graphs with biases and
// activations as kernels of their own instead of cuBLASLt epilogues, steps launched op by op
// (--enforce-eager), and the graphs again with every request drawing its tokens (temperature 1,
// top-p 0.95: the sampler's sort of each row's vocabulary) instead of taking the most likely.
// Then, for the graphs and the eager engines, the device time of each op per decode step (events
// on the compute stream, each step held back until the host has issued it: op_timeline.h), so a
// step's time splits into its products (with the weight bandwidth they reach), its kernels and
// what the host adds.
// Usage: gpu_decode_bench [synthetic:<shape> or model dir] [new tokens per sequence] [batch sizes,
//        comma-separated: 1,8,32,128]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "bench_util.h"
#include "engine_runs.h"
#include "common/synthetic_models.h"
#include "common/tokenizer.h"
#include "coordinator/engine.h"
#include "coordinator/engine_factory.h"
#include "common/step_executor.h"
#include "worker/local_executor.h"
#include "worker/cuda/cuda_backend.h"
#include "worker/cuda/device_bandwidth.h"
#include "worker/cuda/op_times.h"
#include "worker/worker.h"

using namespace kvmesh;

namespace {

// One engine variant of the table: decode graphs or not, fused product epilogues or not, the
// few-rows kernel or cuBLAS for decode batches' products, kernels launched to overlap or not.
struct Variant {
  const char* name;
  bool graphs;
  bool fused_epilogues;
  bool few_rows_kernel;
  bool overlap_launches;
};

std::unique_ptr<Engine> make_engine(const std::string& model, int max_seqs, const Variant& variant) {
  EngineSpec spec;
  WorkerOptions& wo = spec.worker;
  wo.decode_graphs = variant.graphs;
  wo.cuda.fused_epilogues = variant.fused_epilogues;
  wo.cuda.few_rows_kernel = variant.few_rows_kernel;
  wo.cuda.overlap_launches = variant.overlap_launches;
  wo.model_dir = model;
  wo.device = DeviceKind::cuda;
  wo.weight_dtype = DType::bf16;
  wo.cache.kv_dtype = DType::bf16;
  wo.cache.device_bytes = 16ll << 30;
  spec.max_batch_tokens = 8192;
  spec.max_num_seqs = max_seqs;
  auto tok = Tokenizer::from_vocab_merges(KVMESH_DATA_DIR "/gpt2/vocab.json", KVMESH_DATA_DIR "/gpt2/merges.txt");
  if (!tok.is_ok()) return nullptr;
  auto engine = make_local_engine(spec, std::shared_ptr<const Tokenizer>(std::move(tok).value()));
  if (!engine.is_ok()) {
    std::fprintf(stderr, "gpu_decode_bench: %s\n", engine.status().to_string().c_str());
    return nullptr;
  }
  return std::move(engine).value();
}

// The columns of the graphs engine with requests that draw their tokens.
struct DrawColumn {
  bench::Picking picking;
  const char* name;
};
constexpr DrawColumn kDrawColumns[] = {
    {bench::Picking::sampled, "graphs, sampled: T 1, top-p 0.95"},
    {bench::Picking::penalised, "graphs, sampled with penalties: repetition 1.1, frequency and presence 0.5"}};
constexpr size_t kDrawKinds = sizeof(kDrawColumns) / sizeof(kDrawColumns[0]);

// "1,8,32" as {1, 8, 32}; empty when any item is not a batch size from 1 to 128 (the engine's
// most sequences).
std::vector<int> parse_batches(const std::string& list) {
  std::vector<int> out;
  size_t at = 0;
  while (at <= list.size()) {
    const size_t comma = std::min(list.find(',', at), list.size());
    const std::string item = list.substr(at, comma - at);
    char* end = nullptr;
    const long b = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || b < 1 || b > 128) return {};
    out.push_back(static_cast<int>(b));
    at = comma + 1;
  }
  return out;
}

// A variant's figures on stderr as soon as they exist, in case a later one does not finish.
void print_progress(const char* name, const std::vector<int>& batches, const std::vector<double>& tps) {
  std::fprintf(stderr, "gpu_decode_bench: %s: tok/s", name);
  for (size_t i = 0; i < batches.size(); ++i) std::fprintf(stderr, " %.1f (batch %d)", tps[i], batches[i]);
  std::fprintf(stderr, "\n");
}

constexpr int kTimedNewTokens = 8;  // tokens per sequence of an op-timed run
constexpr double kTimedSteps = kTimedNewTokens - 1;  // its decode steps: the first token comes with the prompt

// Per batch size, the op times of decode steps with op timing on (the engine warmed already), the
// requests picking their tokens as `picking` says.
std::vector<OpTimes> time_ops(Engine& engine, const std::vector<int>& batches,
                              bench::Picking picking = bench::Picking::greedy) {
  std::vector<OpTimes> out;
  set_cuda_op_timing(true);
  for (int batch : batches) {
    (void)take_cuda_op_times();
    const double tps =
        bench::decode_tokens_per_s(engine, batch, kTimedNewTokens, picking, [] { (void)take_cuda_op_times(); });
    out.push_back(take_cuda_op_times());
    if (tps <= 0.0) out.back() = OpTimes{};  // a failed run: no figures
  }
  set_cuda_op_timing(false);
  return out;
}

// One engine's op times as a table: microseconds per decode step of each op at each batch size
// (with the weight bandwidth of the products), their sum, and the step time the engine reached
// untimed (from its tokens/s).
void print_op_table(const char* name, const std::vector<int>& batches, const std::vector<OpTimes>& times,
                    const std::vector<double>& tps) {
  std::printf("Device time per decode step, op by op (%s engine; us, products with the GB/s of weights "
              "they read):\n\n| op | calls per step |",
              name);
  for (int b : batches) std::printf(" batch %d |", b);
  std::printf("\n|---|---|");
  for (size_t i = 0; i < batches.size(); ++i) std::printf("---|");
  std::printf("\n");
  // Ops in the order of their time at the first batch size, longest first.
  std::vector<std::pair<double, std::string>> order;
  for (const auto& [op, t] : times[0].ops) order.push_back({-t.seconds, op});
  for (size_t i = 1; i < times.size(); ++i)
    for (const auto& [op, t] : times[i].ops)
      if (times[0].ops.count(op) == 0) order.push_back({0.0, op});
  std::sort(order.begin(), order.end());
  std::vector<double> sums(batches.size(), 0.0);
  for (const auto& entry : order) {
    const std::string& op = entry.second;
    const auto first = times[0].ops.find(op);
    const double calls = first == times[0].ops.end() ? 0.0 : static_cast<double>(first->second.calls) / kTimedSteps;
    std::printf("| %s | %.1f |", op.c_str(), calls);
    for (size_t i = 0; i < batches.size(); ++i) {
      const auto it = times[i].ops.find(op);
      if (it == times[i].ops.end()) {
        std::printf(" - |");
        continue;
      }
      const double us = it->second.seconds * 1e6 / kTimedSteps;
      sums[i] += us;
      if (it->second.weight_bytes > 0.0 && it->second.seconds > 0.0)
        std::printf(" %.1f (%.0f GB/s) |", us, it->second.weight_bytes / it->second.seconds / 1e9);
      else
        std::printf(" %.1f |", us);
    }
    std::printf("\n");
  }
  std::printf("| **sum of the ops** | |");
  for (double v : sums) std::printf(" %.1f |", v);
  std::printf("\n| **step, untimed (from tok/s)** | |");
  for (size_t i = 0; i < batches.size(); ++i)
    std::printf(" %.1f |", tps[i] > 0.0 ? 1e6 * batches[i] / tps[i] : 0.0);
  std::printf("\n| held stretches in the %.0f steps (of them starved) | |", kTimedSteps);
  for (const OpTimes& t : times)
    std::printf(" %lld (%lld) |", static_cast<long long>(t.timelines), static_cast<long long>(t.starved_timelines));
  std::printf("\n\n");
}

}  // namespace

int main(int argc, char** argv) {
  const std::string model = argc > 1 ? argv[1] : "synthetic:gpt2-xl";
  const int n_new = argc > 2 ? std::atoi(argv[2]) : 64;
  const std::vector<int> batches = parse_batches(argc > 3 ? argv[3] : "1,8,32,128");
  if (n_new < 2 || batches.empty()) {
    std::fprintf(stderr, "gpu_decode_bench: usage: gpu_decode_bench [model] [new tokens >= 2] [batch sizes 1-128, "
                         "comma-separated]\n");
    return 2;
  }
  if (cuda_device_count() == 0) {
    std::fprintf(stderr, "gpu_decode_bench: no CUDA GPU usable (%s)\n", cuda_no_device_reason().c_str());
    return 1;
  }
  auto config = resolve_model_config(model);
  if (!config.is_ok()) {
    std::fprintf(stderr, "gpu_decode_bench: %s\n", config.status().to_string().c_str());
    return 1;
  }
  auto bw = measure_device_copy_gbs(0);
  if (!bw.is_ok()) {
    std::fprintf(stderr, "gpu_decode_bench: %s\n", bw.status().to_string().c_str());
    return 1;
  }
  // Every parameter is read once per decode step (bf16); the tied LM head reads wte a second time.
  const double weight_bytes = (static_cast<double>(config->n_params()) +
                               static_cast<double>(config->vocab_size) * config->n_embd) * 2.0;
  const double roofline = *bw * 1e9 / weight_bytes;  // steps/s, so tokens/s per sequence
  // Tokens/s per variant and batch size; each engine is warmed at every batch size first (cuBLAS
  // heuristics, allocations, and with graphs the recording of each size's graph).
  const Variant variants[] = {{"graphs", true, true, true, true},
                              {"graphs, launches one after another", true, true, true, false},
                              {"graphs, products through cuBLAS", true, true, false, true},
                              {"graphs, epilogues apart", true, false, true, true},
                              {"eager", false, true, true, true}};
  constexpr size_t kVariants = sizeof(variants) / sizeof(variants[0]);
  std::vector<double> tps[kVariants];
  std::vector<double> draw_tps[kDrawKinds];  // the first variant's engine, requests drawing their tokens
  std::vector<OpTimes> op_times[kVariants];  // per batch size, for the timed variants
  std::vector<OpTimes> sampled_op_times;     // the first variant's, its requests drawing their tokens
  const auto timed = [](size_t k) { return k == 0 || k == 4; };  // graphs and eager
  for (size_t k = 0; k < kVariants; ++k) {
    std::fprintf(stderr, "gpu_decode_bench: %s: building the engine, warming up, running\n", variants[k].name);
    auto engine = make_engine(model, 128, variants[k]);
    if (!engine) {
      tps[k].assign(batches.size(), 0.0);  // the table still prints, with zeros for this variant
      if (k == 0)
        for (auto& column : draw_tps) column.assign(batches.size(), 0.0);
      continue;
    }
    for (int batch : batches) (void)bench::decode_tokens_per_s(*engine, batch, 4);
    for (int batch : batches) tps[k].push_back(bench::decode_tokens_per_s(*engine, batch, n_new));
    print_progress(variants[k].name, batches, tps[k]);
    if (k == 0) {
      for (size_t d = 0; d < kDrawKinds; ++d) {
        const bench::Picking picking = kDrawColumns[d].picking;
        for (int batch : batches) (void)bench::decode_tokens_per_s(*engine, batch, 4, picking);
        for (int batch : batches) draw_tps[d].push_back(bench::decode_tokens_per_s(*engine, batch, n_new, picking));
        print_progress(kDrawColumns[d].name, batches, draw_tps[d]);
      }
    }
    if (timed(k)) op_times[k] = time_ops(*engine, batches);
    if (k == 0) sampled_op_times = time_ops(*engine, batches, kDrawColumns[0].picking);
  }
  // The op tables first, so that the decode table is the last thing printed.
  for (size_t k = 0; k < kVariants; ++k)
    if (timed(k) && op_times[k].size() == batches.size()) print_op_table(variants[k].name, batches, op_times[k], tps[k]);
  if (sampled_op_times.size() == batches.size() && draw_tps[0].size() == batches.size())
    print_op_table(kDrawColumns[0].name, batches, sampled_op_times, draw_tps[0]);
  std::printf("\n");
  std::printf("model %s: %.2f B parameters, %.2f GB of bf16 weights read per decode step; "
              "device copy bandwidth %.0f GB/s\n\n",
              model.c_str(), config->n_params() / 1e9, weight_bytes / 1e9, *bw);
  std::printf("| batch |");
  for (const Variant& v : variants) std::printf(" decode tok/s (%s) |", v.name);
  for (const DrawColumn& column : kDrawColumns) std::printf(" decode tok/s (%s) |", column.name);
  std::printf(" roofline tok/s (batch x weight-bytes bound) | %% of roofline (graphs) |\n|---|");
  for (size_t k = 0; k < kVariants + kDrawKinds; ++k) std::printf("---|");
  std::printf("---|---|\n");
  for (size_t i = 0; i < batches.size(); ++i) {
    const double bound = roofline * batches[i];
    std::printf("| %d |", batches[i]);
    for (size_t k = 0; k < kVariants; ++k) std::printf(" %.1f |", tps[k][i]);
    for (const auto& column : draw_tps) std::printf(" %.1f |", column[i]);
    std::printf(" %.1f | %.0f%% |\n", bound, 100.0 * tps[0][i] / bound);
  }
  // A 0 is a run that failed (its reason is on stderr): the table stands, the exit status says so.
  for (const auto& row : tps)
    for (double v : row)
      if (v <= 0.0) return 1;
  for (const auto& column : draw_tps)
    for (double v : column)
      if (v <= 0.0) return 1;
  return 0;
}
