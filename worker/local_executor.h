// LocalExecutor: the StepExecutor that runs plans on a worker in this process (world size 1).
#pragma once

#include <memory>

#include "common/step_executor.h"
#include "worker/worker.h"

namespace kvmesh {

class LocalExecutor : public StepExecutor {
 public:
  explicit LocalExecutor(std::unique_ptr<Worker> worker) : worker_(std::move(worker)) {}
  Status execute(const StepPlan& plan, StepResult* result) override {
    return worker_->execute(plan, result);
  }
  const TierCapacity& capacity() const override { return worker_->capacity(); }
  Worker& worker() { return *worker_; }

 private:
  std::unique_ptr<Worker> worker_;
};

}  // namespace kvmesh
