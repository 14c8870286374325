// The control plane between ranks: rank 0 broadcasts each StepPlan and collects the sampling rank's
// StepResult; every other rank runs the worker loop. Waits are bounded, so a rank that stops
// answering ends the step with an error instead of hanging the service.
#pragma once

#include <memory>

#include "common/step_executor.h"
#include "worker/worker.h"

namespace kvmesh {

struct ControlOptions {
  double step_timeout_s = 300.0;  // longest a step may wait for another rank
  double startup_timeout_s = 1800.0;  // longest a rank's start-up may take under mpirun (0: no bound)
  bool report_timing = false;     // each rank prints its busy share of step time at shutdown
};

// One line on stderr: the rank's steps, step time and busy (compute) time.
void print_rank_timing(const Worker& worker);

// The control communicator: a duplicate of the world communicator, opened collectively by every
// rank (so inside the start-up watchdog's bound, where a rank that never gets there ends the job).
class ControlChannel {
 public:
  static ControlChannel open();  // collective over MPI_COMM_WORLD
  ControlChannel(ControlChannel&& other) noexcept;
  ControlChannel& operator=(ControlChannel&&) = delete;
  ControlChannel(const ControlChannel&) = delete;
  ~ControlChannel();
  struct Comm;
  Comm& comm() const { return *comm_; }

 private:
  explicit ControlChannel(std::unique_ptr<Comm> comm);
  std::unique_ptr<Comm> comm_;
};

// Rank 0's StepExecutor over every rank, while the other ranks run run_worker_loop.
class DistributedExecutor : public StepExecutor {
 public:
  DistributedExecutor(std::unique_ptr<Worker> worker, ControlChannel channel, const ControlOptions& options);
  ~DistributedExecutor() override;
  Status execute(const StepPlan& plan, StepResult* result) override;
  const TierCapacity& capacity() const override { return worker_->capacity(); }
  // Tells every worker loop to return. Call once, before MPI is finalised.
  Status shutdown();
  Worker& worker() { return *worker_; }

 private:
  // The sampling rank's answer to the plan just broadcast (bounded by the step timeout).
  Status receive_result(int sampler, StepResult* result);

  std::unique_ptr<Worker> worker_;
  ControlChannel channel_;
  ControlOptions options_;
  bool shut_down_ = false;
  int fail_rank_ = -1;  // KVMESH_DEBUG_FAIL_STEP_RANK (tests)
};

// Ranks 1..N-1: run plans until the shutdown plan; an undecodable plan is returned as an error (the
// caller aborts the job). A failed step is logged, and the sampling rank sends it to rank 0 as the
// step's result (StepResult::error_code), at once.
Status run_worker_loop(Worker& worker, ControlChannel channel, const ControlOptions& options);

}  // namespace kvmesh
