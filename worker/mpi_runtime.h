// MPI lifetime for a kvmesh process: initialised only when launched by mpirun (a plain process is
// world size 1 without MPI), finalised at exit, aborted on fatal errors.
#pragma once

namespace kvmesh {

// True when this process was started by an MPI launcher (mpirun, srun with PMI/PMIx).
bool launched_by_mpi();

class MpiRuntime {
 public:
  // Initialises MPI when launched_by_mpi(); otherwise rank 0 of a world of 1. The level is
  // MPI_THREAD_SERIALIZED: one thread at a time calls MPI (the engine thread while serving, the
  // main thread before and after).
  MpiRuntime(int* argc, char*** argv);
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;

  bool active() const { return active_; }
  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  // Ends every rank of the job with `code` (MPI_Abort), or the process alone without MPI.
  [[noreturn]] void abort(int code);

 private:
  bool active_ = false;
  int rank_ = 0;
  int world_size_ = 1;
};

}  // namespace kvmesh
