// Test helpers: build an in-process engine over a checkpoint directory and run requests on it.
#pragma once

#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/config.h"
#include "common/tokenizer.h"
#include "coordinator/engine.h"
#include "coordinator/engine_factory.h"
#include "coordinator/scheduler.h"
#include "common/step_executor.h"
#include "worker/local_executor.h"
#include "shipped_tokenizer.h"
#include "worker/worker.h"

namespace kvmesh::testing {

inline std::string hf_fixture_dir() { return KVMESH_TEST_DATA_DIR "/hf-gpt2-4l32d"; }

inline nlohmann::json load_json_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

struct EngineOptions {
  int32_t block_size = 16;
  int64_t device_bytes = 64ll << 20;
  double device_fraction = 0.0;  // > 0: the device pool is this share of the free device memory
  int64_t host_bytes = 0;
  int64_t disk_bytes = 0;
  std::string disk_dir;  // needed with disk_bytes
  int32_t max_batch_tokens = 2048;
  int32_t max_num_seqs = 64;
  int n_threads = 2;
  DeviceKind device = DeviceKind::cpu;
  DType kv_dtype = DType::f32;
  bool record_graphs = false;  // decode steps through graphs recorded on the CPU backend
  int recordings_fail_from_rows = 0;  // with record_graphs: buckets this large fail to record
  bool eager = false;          // CUDA: no decode graphs
  std::optional<DType> weight_dtype;  // matrix weights; unset: the device's default (cpu f32, cuda bf16)
  CudaBackendOptions cuda;            // CUDA: how the backend runs its ops
};

// Greedy decoding of exactly max_tokens tokens (EOS ignored), as the fixture's golden runs.
// The log-prob of each position's chosen token.
inline std::vector<double> chosen_logprobs(const std::vector<PositionLogprobs>& positions) {
  std::vector<double> out;
  for (const PositionLogprobs& p : positions) out.push_back(p.chosen.logprob);
  return out;
}

inline GenerationRequest greedy_request(const std::vector<int32_t>& prompt, int32_t max_tokens) {
  GenerationRequest r;
  r.prompt_ids = prompt;
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0.0f;
  r.ignore_eos = true;
  return r;
}

// Builds an engine for model_dir; aborts the test (via the returned null) on failure.
// worker, when given, sees the engine's worker (owned by the engine).
inline std::unique_ptr<Engine> make_engine(const std::string& model_dir, const EngineOptions& o,
                                           std::string* error = nullptr, const Worker** worker_out = nullptr) {
  EngineSpec spec;
  WorkerOptions& wo = spec.worker;
  wo.model_dir = model_dir;
  wo.cache.block_size = o.block_size;
  wo.cache.device_bytes = o.device_bytes;
  wo.cache.device_fraction = o.device_fraction;
  wo.cache.host_bytes = o.host_bytes;
  wo.cache.disk_bytes = o.disk_bytes;
  wo.cache.disk_dir = o.disk_dir;
  wo.n_threads = o.n_threads;
  wo.device = o.device;
  wo.cache.kv_dtype = o.kv_dtype;
  wo.record_graphs_on_cpu = o.record_graphs;
  wo.cpu_recordings_fail_from_rows = o.recordings_fail_from_rows;
  wo.decode_graphs = !o.eager;
  wo.weight_dtype = o.weight_dtype;
  wo.cuda = o.cuda;
  spec.max_batch_tokens = o.max_batch_tokens;
  spec.max_num_seqs = o.max_num_seqs;
  auto engine = make_local_engine(spec, gpt2_tokenizer(), nullptr, worker_out);
  if (!engine.is_ok()) {
    if (error) *error = engine.status().to_string();
    return nullptr;
  }
  return std::move(engine).value();
}

// Submits every request at once and steps until all finish. Outputs in request order.
inline std::vector<GenerationOutput> run_all(Engine& engine, std::vector<GenerationRequest> reqs) {
  std::vector<GenerationOutput> outputs(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    auto id = engine.add_request(std::move(reqs[i]),
                                 [&outputs, i](const GenerationDelta& d) { outputs[i].append(d); });
    if (!id.is_ok()) outputs[i].error = id.status().to_string();
    if (!id.is_ok()) outputs[i].finish = FinishReason::error;
  }
  for (int guard = 0; engine.has_work() && guard < 1000000; ++guard) {
    const Status step = engine.step();
    if (step.is_ok()) continue;
    // A failed step ends the run: every request still open carries its error, so a comparison
    // of two runs cannot pass on outputs that never came.
    for (GenerationOutput& out : outputs)
      if (!out.finished()) {
        out.error = "step failed: " + step.to_string();
        out.finish = FinishReason::error;
      }
    break;
  }
  return outputs;
}

// Every request of `reqs` (groups of n sequences) run together; outputs[request][index].
inline std::vector<std::vector<GenerationOutput>> run_groups(Engine& engine, std::vector<GenerationRequest> reqs) {
  std::vector<std::vector<GenerationOutput>> out(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    out[i].resize(static_cast<size_t>(reqs[i].n));
    auto id = engine.add_request(std::move(reqs[i]), [&out, i](const GenerationDelta& d) {
      out[i][static_cast<size_t>(d.index)].append(d);
    });
    EXPECT_TRUE(id.is_ok()) << id.status().to_string();
  }
  for (int guard = 0; engine.has_work() && guard < 100000; ++guard) EXPECT_TRUE(engine.step().is_ok());
  return out;
}

}  // namespace kvmesh::testing
