// StepExecutor: how the engine gets a StepPlan run (a worker in this process, or every rank).
#pragma once

#include <cstdint>

#include "common/protocol.h"
#include "common/status.h"

namespace kvmesh {

class StepExecutor {
 public:
  virtual ~StepExecutor() = default;
  // Runs one step on every worker and returns the sampling rank's result.
  virtual Status execute(const StepPlan& plan, StepResult* result) = 0;
  // Pages in the device tier of every worker (the same page ids on every rank).
  virtual int32_t n_device_pages() const = 0;
};

}  // namespace kvmesh
