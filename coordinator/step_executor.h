// StepExecutor: how the engine gets a StepPlan run (in-process worker now; all ranks when distributed).
#pragma once

#include <memory>

#include "common/protocol.h"
#include "common/status.h"

namespace kvmesh {

class Worker;

class StepExecutor {
 public:
  virtual ~StepExecutor() = default;
  virtual Status execute(const StepPlan& plan, StepResult* result) = 0;
  // Pages in the device tier of every worker (the same page ids on every rank).
  virtual int32_t n_device_pages() const = 0;
};

// Runs plans on a worker in this process.
class LocalExecutor : public StepExecutor {
 public:
  explicit LocalExecutor(std::unique_ptr<Worker> worker);
  ~LocalExecutor() override;
  Status execute(const StepPlan& plan, StepResult* result) override;
  int32_t n_device_pages() const override;
  Worker& worker() { return *worker_; }

 private:
  std::unique_ptr<Worker> worker_;
};

}  // namespace kvmesh
