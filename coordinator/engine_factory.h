// The one way to build an Engine over workers: in this process, or on rank 0 of an mpirun job
// (the other ranks serve plans until shutdown). Links the coordinator and the worker, so only
// executables and tests use it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "common/config.h"
#include "common/status.h"
#include "common/step_executor.h"
#include "coordinator/engine.h"
#include "worker/control_plane.h"
#include "worker/launch.h"
#include "worker/mpi_runtime.h"
#include "worker/worker.h"

namespace kvmesh {

class Tokenizer;

// What to build: the workers (model, cache, device, dtypes, parallel layout) and the engine's
// step limits.
struct EngineSpec {
  WorkerOptions worker;
  int32_t max_num_seqs = 64;       // sequences in one step
  int32_t max_batch_tokens = 2048; // tokens in one step
  int32_t max_model_len = 0;       // context served; 0: the model's n_positions
};

// The engine's settings for a spec over the model its workers loaded.
EngineConfig engine_config(const EngineSpec& spec, const ModelConfig& model);

// Wraps the executor the engine runs on (tests inject failures with it); none: the executor itself.
using ExecutorWrapper = std::function<std::unique_ptr<StepExecutor>(std::unique_ptr<StepExecutor>)>;

// One process: the worker, then the engine over it. worker_out, when given, sees the worker (which
// the engine owns).
Result<std::unique_ptr<Engine>> make_local_engine(const EngineSpec& spec, std::shared_ptr<const Tokenizer> tokenizer,
                                                  const ExecutorWrapper& wrap = nullptr,
                                                  const Worker** worker_out = nullptr);

// Every rank of a job (a single process too): start_rank, then on rank 0 the engine over every
// rank. On other ranks this returns once their worker loop has ended, with no engine.
struct RankEngine {
  std::unique_ptr<Engine> engine;  // rank 0
  RankRole role;                   // role.distributed: rank 0 under MPI, to shut the others down
};
Result<RankEngine> start_rank_engine(MpiRuntime& mpi, const EngineSpec& spec, const ControlOptions& control,
                                     std::shared_ptr<const Tokenizer> tokenizer);

}  // namespace kvmesh
