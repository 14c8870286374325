// start_rank: the common start of every kvmesh program on every rank: check the layout, load this
// rank's shard (all ranks agreeing on success), then hand rank 0 an executor for its engine while
// the other ranks serve plans until shutdown.
#pragma once

#include <memory>

#include "common/step_executor.h"
#include "worker/control_plane.h"
#include "worker/mpi_runtime.h"
#include "worker/worker.h"

namespace kvmesh {

struct RankRole {
  std::unique_ptr<StepExecutor> executor;  // rank 0 only
  DistributedExecutor* distributed = nullptr;  // rank 0 under MPI: call shutdown() before exit
  Worker* worker = nullptr;                // rank 0's own worker
  Status worker_loop_status;               // ranks != 0, after the loop ended
};

// options.layout.tp/pp are taken as given; rank is filled from mpi. Errors are the same on all
// ranks (the first failing rank's message).
Result<RankRole> start_rank(MpiRuntime& mpi, WorkerOptions options, const ControlOptions& control);

}  // namespace kvmesh
