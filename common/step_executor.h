// StepExecutor: how the engine gets a StepPlan run (a worker in this process, or every rank).
#pragma once

#include <cstdint>
#include <vector>

#include "common/protocol.h"
#include "common/status.h"

namespace kvmesh {

// Pages each tier holds on every rank (the same ids everywhere), and what survived a restart.
struct TierCapacity {
  int32_t device_pages = 0;
  int32_t host_slots = 0;
  int32_t disk_slots = 0;
  int64_t page_bytes = 0;  // bytes of one page on rank 0 (for metrics)
  // Disk slots whose pages every rank still holds from a previous run (--kv-disk-persist):
  // (slot, page hash, tokens in the page).
  struct RecoveredPage {
    int32_t slot;
    uint64_t page_hash;
    int32_t n_tokens;
  };
  std::vector<RecoveredPage> recovered;
};

class StepExecutor {
 public:
  virtual ~StepExecutor() = default;
  // Runs one step on every worker and returns the sampling rank's result.
  virtual Status execute(const StepPlan& plan, StepResult* result) = 0;
  virtual const TierCapacity& capacity() const = 0;
  int32_t n_device_pages() const { return capacity().device_pages; }
};

}  // namespace kvmesh
