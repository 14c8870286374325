// LocalExecutor: runs StepPlans on the worker of this process.
#include "coordinator/step_executor.h"

#include "worker/worker.h"

namespace kvmesh {

LocalExecutor::LocalExecutor(std::unique_ptr<Worker> worker) : worker_(std::move(worker)) {}
LocalExecutor::~LocalExecutor() = default;

Status LocalExecutor::execute(const StepPlan& plan, StepResult* result) {
  return worker_->execute(plan, result);
}

int32_t LocalExecutor::n_device_pages() const { return worker_->n_device_pages(); }

}  // namespace kvmesh
