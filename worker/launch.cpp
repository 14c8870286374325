// start_rank: the common start of every kvmesh program on every rank.
#include "worker/launch.h"

#include <cstdio>

#include "worker/local_executor.h"
#include "worker/mpi_collectives.h"
#include "worker/startup_watchdog.h"
#ifdef KVMESH_HAVE_NCCL
#include "worker/cuda/nccl_collectives.h"
#endif

namespace kvmesh {
namespace {

// MPI between CPU workers; NCCL (over device memory) between CUDA workers.
Result<std::unique_ptr<Collectives>> data_plane(const WorkerOptions& options, const ControlOptions& control) {
  auto mpi = make_mpi_collectives(options.layout);
  if (options.device != DeviceKind::cuda) return mpi;
#ifdef KVMESH_HAVE_NCCL
  return make_nccl_collectives(options.layout, std::move(mpi), control.step_timeout_s);
#else
  (void)control;
  // Without CUDA the backend reports the missing build; with CUDA but no NCCL, say so here.
  if (!cuda_backend_built()) return mpi;
  return unavailable("--device cuda with more than one rank needs NCCL, and this build has none");
#endif
}

}  // namespace

Result<RankRole> start_rank(MpiRuntime& mpi, WorkerOptions options, const ControlOptions& control) {
  options.layout.rank = mpi.rank();
  const ParallelLayout& layout = options.layout;
  if (layout.tp < 1 || layout.pp < 1) return invalid_argument("--tp and --pp must be at least 1");
  if (mpi.world_size() != layout.world_size()) {
    return invalid_argument("world size " + std::to_string(mpi.world_size()) + " != tp * pp = " +
                            std::to_string(layout.tp) + " * " + std::to_string(layout.pp) +
                            "; launch with mpirun -np " + std::to_string(layout.world_size()));
  }
  RankRole role;
  if (!mpi.active()) {
    KVMESH_ASSIGN_OR_RETURN(auto worker, Worker::create(options));
    role.worker = worker.get();
    role.executor = std::make_unique<LocalExecutor>(std::move(worker));
    return role;
  }
  // Worker::create ends with the ranks' agreement that all of them started, so a rank past it
  // knows every peer got there too; the control channel, opened by all, is the last collective
  // the watchdog bounds.
  StartupWatchdog watchdog(control.startup_timeout_s, mpi.rank(), [&mpi] { mpi.abort(1); });
  stall_startup_if_asked(mpi.rank());
  KVMESH_ASSIGN_OR_RETURN(auto collectives, data_plane(options, control));
  KVMESH_ASSIGN_OR_RETURN(auto worker, Worker::create(options, std::move(collectives)));
  ControlChannel channel = ControlChannel::open();
  watchdog.disarm();
  std::fprintf(stderr, "kvmesh rank %d (tp %d, pp %d): read %llu checkpoint bytes for its shard\n",
               layout.rank, layout.tp_rank(), layout.pp_rank(),
               static_cast<unsigned long long>(worker->checkpoint_bytes_read()));
  if (mpi.rank() == 0) {
    role.worker = worker.get();
    auto executor = std::make_unique<DistributedExecutor>(std::move(worker), std::move(channel), control);
    role.distributed = executor.get();
    role.executor = std::move(executor);
    return role;
  }
  role.worker_loop_status = run_worker_loop(*worker, std::move(channel), control);
  return role;
}

}  // namespace kvmesh
