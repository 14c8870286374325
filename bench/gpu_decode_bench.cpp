// gpu_decode_bench: decode tokens/s of the CUDA engine for a synthetic model (default the GPT-2 XL
// shape: 48 layers, 1600 wide, 25 heads) in bf16 at several batch sizes, beside the roofline
// (bf16 weight bytes read per step / measured device copy bandwidth) and the share of it reached,
// with decode steps replayed from CUDA graphs and, beside them, launched op by op (--enforce-eager).
// Usage: gpu_decode_bench [synthetic:<shape>] [new tokens per sequence]
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
#include "coordinator/step_executor.h"
#include "worker/cuda/cuda_backend.h"
#include "worker/cuda/device_bandwidth.h"
#include "worker/worker.h"

using namespace kvmesh;

namespace {

std::unique_ptr<Engine> make_engine(const std::string& model, int max_seqs, bool eager) {
  WorkerOptions wo;
  wo.decode_graphs = !eager;
  wo.model_dir = model;
  wo.device = DeviceKind::cuda;
  wo.weight_dtype = DType::bf16;
  wo.cache.kv_dtype = DType::bf16;
  wo.cache.device_bytes = 16ll << 30;
  auto worker = Worker::create(wo);
  if (!worker.is_ok()) {
    std::fprintf(stderr, "gpu_decode_bench: %s\n", worker.status().to_string().c_str());
    return nullptr;
  }
  auto tok = Tokenizer::from_vocab_merges(KVMESH_DATA_DIR "/gpt2/vocab.json", KVMESH_DATA_DIR "/gpt2/merges.txt");
  if (!tok.is_ok()) return nullptr;
  EngineConfig ec;
  ec.model = (*worker)->model_config();
  ec.cache = wo.cache;
  ec.max_batch_tokens = 8192;
  ec.max_num_seqs = max_seqs;
  return std::make_unique<Engine>(ec, std::make_unique<LocalExecutor>(std::move(worker).value()),
                                  std::shared_ptr<const Tokenizer>(std::move(tok).value()));
}

}  // namespace

int main(int argc, char** argv) {
  const std::string model = argc > 1 ? argv[1] : "synthetic:gpt2-xl";
  const int n_new = argc > 2 ? std::atoi(argv[2]) : 64;
  if (cuda_device_count() == 0) {
    std::fprintf(stderr, "gpu_decode_bench: no CUDA GPU visible\n");
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
  const std::vector<int> batches = {1, 8, 32, 128};
  // Tokens/s per batch size, graphs first; each engine is warmed at every batch size first
  // (cuBLAS heuristics, allocations, and with graphs the recording of each size's graph).
  std::vector<double> tps[2];
  for (int eager = 0; eager < 2; ++eager) {
    auto engine = make_engine(model, 128, eager == 1);
    if (!engine) return 1;
    for (int batch : batches) (void)bench::decode_tokens_per_s(*engine, batch, 4);
    for (int batch : batches) tps[eager].push_back(bench::decode_tokens_per_s(*engine, batch, n_new));
  }
  std::printf("model %s: %.2f B parameters, %.2f GB of bf16 weights read per decode step; "
              "device copy bandwidth %.0f GB/s\n\n",
              model.c_str(), config->n_params() / 1e9, weight_bytes / 1e9, *bw);
  std::printf("| batch | decode tok/s (graphs) | decode tok/s (eager) | roofline tok/s (batch x weight-bytes "
              "bound) | %% of roofline (graphs) |\n");
  std::printf("|---|---|---|---|---|\n");
  for (size_t i = 0; i < batches.size(); ++i) {
    const double bound = roofline * batches[i];
    std::printf("| %d | %.1f | %.1f | %.1f | %.0f%% |\n", batches[i], tps[0][i], tps[1][i], bound,
                100.0 * tps[0][i] / bound);
  }
  return 0;
}
