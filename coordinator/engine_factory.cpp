// Engine construction over a local worker or every rank of a job.
#include "coordinator/engine_factory.h"

#include <utility>

#include "common/tokenizer.h"
#include "worker/local_executor.h"

namespace kvmesh {

EngineConfig engine_config(const EngineSpec& spec, const ModelConfig& model) {
  EngineConfig ec;
  ec.model = model;
  if (spec.max_model_len > 0) ec.model.n_positions = spec.max_model_len;  // what the engine admits
  ec.cache = spec.worker.cache;
  ec.max_num_seqs = spec.max_num_seqs;
  ec.max_batch_tokens = spec.max_batch_tokens;
  return ec;
}

Result<std::unique_ptr<Engine>> make_local_engine(const EngineSpec& spec, std::shared_ptr<const Tokenizer> tokenizer,
                                                  const ExecutorWrapper& wrap, const Worker** worker_out) {
  KVMESH_ASSIGN_OR_RETURN(std::unique_ptr<Worker> worker, Worker::create(spec.worker));
  if (worker_out != nullptr) *worker_out = worker.get();
  const EngineConfig ec = engine_config(spec, worker->model_config());
  std::unique_ptr<StepExecutor> executor = std::make_unique<LocalExecutor>(std::move(worker));
  if (wrap) executor = wrap(std::move(executor));
  return std::make_unique<Engine>(ec, std::move(executor), std::move(tokenizer));
}

Result<RankEngine> start_rank_engine(MpiRuntime& mpi, const EngineSpec& spec, const ControlOptions& control,
                                     std::shared_ptr<const Tokenizer> tokenizer) {
  RankEngine out;
  KVMESH_ASSIGN_OR_RETURN(out.role, start_rank(mpi, spec.worker, control));
  if (mpi.rank() != 0) return out;
  const EngineConfig ec = engine_config(spec, out.role.worker->model_config());
  out.engine = std::make_unique<Engine>(ec, std::move(out.role.executor), std::move(tokenizer));
  return out;
}

}  // namespace kvmesh
