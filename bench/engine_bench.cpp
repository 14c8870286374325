// engine_bench: prefill and decode tokens/s of the CPU engine on a GPT-2-124M-shaped checkpoint, with
// fp32 and bf16 weights, beside the machine's read bandwidth over a buffer the size of
// the weights and the batch-1 decode roofline (weight bytes / that bandwidth).
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "bench_util.h"
#include "engine_runs.h"
#include "common/data_dir.h"
#include "common/tokenizer.h"
#include "coordinator/engine.h"
#include "coordinator/engine_factory.h"
#include "common/step_executor.h"
#include "worker/local_executor.h"
#include "worker/worker.h"

using namespace kvmesh;

namespace {

std::unique_ptr<Engine> make_engine(const std::string& dir, int threads, DType weight_dtype) {
  EngineSpec spec;
  spec.worker.model_dir = dir;
  spec.worker.cache.device_bytes = 1ll << 30;
  spec.worker.n_threads = threads;
  spec.worker.weight_dtype = weight_dtype;
  spec.max_batch_tokens = 4096;
  auto tok = Tokenizer::from_model_dir(dir, shipped_gpt2_tokenizer_dir());
  if (!tok.is_ok()) {
    std::fprintf(stderr, "%s\n", tok.status().to_string().c_str());
    return nullptr;
  }
  auto engine = make_local_engine(spec, std::shared_ptr<const Tokenizer>(std::move(tok).value()));
  if (!engine.is_ok()) {
    std::fprintf(stderr, "%s\n", engine.status().to_string().c_str());
    return nullptr;
  }
  return std::move(engine).value();
}

// Seconds to prefill n_prompt tokens of one sequence (one step, sampling its first token).
double time_prefill(Engine& engine, int n_prompt) {
  int done = 0;
  (void)engine.add_request(bench::synthetic_request(n_prompt, 1, 0), [&](const GenerationDelta& d) { done += d.finish != FinishReason::none; });
  const double t0 = seconds_now();
  while (!done) (void)engine.step();
  return seconds_now() - t0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : bench::ensure_preset_model("gpt2-124m", "/tmp/kvmesh-bench");
  if (dir.empty()) return 1;
  auto config = load_model_config(dir + "/config.json");
  if (!config.is_ok()) return 1;
  std::printf("model %s: %.1f M parameters; a decode step reads them all (4 bytes each in fp32, 2 in bf16)\n\n",
              dir.c_str(), config->n_params() / 1e6);
  std::printf("| weights | threads | read GB/s (weights-sized) | prefill tok/s (512) | decode tok/s b=1 | roofline b=1 | "
              "%% of roofline | decode tok/s b=8 | decode tok/s b=16 | b=16 sampled (T 1, top-p 0.95) |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  for (DType weight_dtype : {DType::f32, DType::bf16}) {
    for (int threads : {1, 2}) {
      const double weight_bytes = static_cast<double>(config->n_params() * dtype_size(weight_dtype));
      // Read bandwidth over a buffer the size of the weights: where the last-level cache holds a
      // good part of them, this is the rate a decode step actually sees, not the DRAM rate.
      const double bw = bench::measure_read_bandwidth_gbs(threads, static_cast<size_t>(weight_bytes));
      auto engine = make_engine(dir, threads, weight_dtype);
      if (!engine) return 1;
      time_prefill(*engine, 64);  // warm up
      const double prefill = 512.0 / time_prefill(*engine, 512);
      const double b1 = bench::decode_tokens_per_s(*engine, 1, 48);
      const double b8 = bench::decode_tokens_per_s(*engine, 8, 24);
      const double b16 = bench::decode_tokens_per_s(*engine, 16, 24);
      const double b16_sampled = bench::decode_tokens_per_s(*engine, 16, 24, bench::Picking::sampled);
      const double roofline = bw * 1e9 / weight_bytes;
      std::printf("| %s | %d | %.1f | %.0f | %.1f | %.1f | %.0f%% | %.1f | %.1f | %.1f |\n", dtype_name(weight_dtype),
                  threads, bw, prefill, b1, roofline, 100.0 * b1 / roofline, b8, b16, b16_sampled);
      std::fflush(stdout);
    }
  }
  return 0;
}
