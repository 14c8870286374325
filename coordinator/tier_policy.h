// TierPolicy: measures what page moves and prefill cost on this deployment (from the workers' step
// timings) and decides, for a prefix hit in host or disk, whether bringing its pages back is faster
// than recomputing their tokens.
#pragma once

#include <cstdint>

#include "common/protocol.h"
#include "coordinator/block_manager.h"

namespace kvmesh {

struct TierCosts {
  double seconds_per_page[5] = {0, 0, 0, 0, 0};  // by CacheOpKind; 0 = not measured yet
  double recompute_seconds_per_token = 0;        // 0 = not measured yet
};

class TierPolicy {
 public:
  explicit TierPolicy(int32_t block_size) : block_size_(block_size) {}

  // Folds one step's measured times into the running estimates.
  void observe(const StepPlan& plan, const StepResult& result);
  // True when bringing a page back from `from` is expected to beat recomputing it (or when either
  // side is not measured yet: copies are the better first guess).
  bool worth_reusing(Tier from) const;
  const TierCosts& costs() const { return costs_; }

 private:
  int32_t block_size_;
  TierCosts costs_;
};

}  // namespace kvmesh
