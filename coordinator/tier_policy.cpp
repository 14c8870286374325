// TierPolicy: running estimates of page-move and recompute costs, and the swap-in decision.
#include "coordinator/tier_policy.h"

namespace kvmesh {
namespace {

constexpr double kWeight = 0.2;  // of the newest measurement in the moving average

void fold(double* estimate, double value) {
  *estimate = *estimate == 0 ? value : (1 - kWeight) * *estimate + kWeight * value;
}

}  // namespace

void TierPolicy::observe(const StepPlan& plan, const StepResult& result) {
  int32_t counts[5] = {0, 0, 0, 0, 0};
  for (const CacheOp& op : plan.cache_ops) ++counts[static_cast<int>(op.kind)];
  for (int k = 0; k < 5; ++k) {
    if (counts[k] > 0 && result.timings.cache_op_seconds[k] > 0)
      fold(&costs_.seconds_per_page[k], result.timings.cache_op_seconds[k] / counts[k]);
  }
  // Prefill-sized steps say what recomputing a page of tokens costs.
  const int32_t n_tokens = plan.n_tokens();
  if (n_tokens >= block_size_ && result.timings.forward_seconds > 0)
    fold(&costs_.recompute_seconds_per_token, result.timings.forward_seconds / n_tokens);
}

bool TierPolicy::worth_reusing(Tier from) const {
  if (from == Tier::device) return true;
  const double recompute = costs_.recompute_seconds_per_token * block_size_;
  double copy = costs_.seconds_per_page[static_cast<int>(CacheOpKind::swap_in)];
  if (from == Tier::disk) copy += costs_.seconds_per_page[static_cast<int>(CacheOpKind::disk_load)];
  if (recompute == 0 || copy == 0) return true;
  return copy < recompute;
}

}  // namespace kvmesh
