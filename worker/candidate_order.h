// The order a sampled draw walks its candidates in: token ids by (logit descending, id ascending).
#pragma once

#include <cstdint>
#include <vector>

namespace kvmesh {

// The first k (1 <= k <= n) token ids of logits[0, n) in (logit descending, id ascending) order,
// into *ids (resized to k). -0 and +0 are the same logit. For a k that is a small share of n this
// is a partial sort; otherwise a stable radix sort of order-preserving keys, linear in n (a
// comparison sort of a whole 50k vocabulary costs the host milliseconds per draw).
void order_candidates(const float* logits, int32_t n, int32_t k, std::vector<int32_t>* ids);

}  // namespace kvmesh
