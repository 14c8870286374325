// order_candidates against a comparison sort by (logit descending, id ascending): rows with many
// ties, both zeros, negatives and infinities, for k from 1 to the whole row (both of its methods).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "worker/candidate_order.h"

namespace kvmesh {
namespace {

std::vector<int32_t> reference_order(const std::vector<float>& logits, int32_t k) {
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  ids.resize(static_cast<size_t>(k));
  return ids;
}

TEST(CandidateOrder, MatchesAComparisonSortForEveryK) {
  std::mt19937 rng(5);
  for (int32_t n : {1, 2, 17, 1000, 50257}) {
    std::vector<float> logits(static_cast<size_t>(n));
    std::normal_distribution<float> spread(0.0f, 4.0f);
    std::uniform_int_distribution<int> coarse(-6, 6);
    for (size_t i = 0; i < logits.size(); ++i) {
      switch (i % 5) {
        case 0: logits[i] = spread(rng); break;
        case 1: logits[i] = static_cast<float>(coarse(rng)) * 0.5f; break;  // many ties
        case 2: logits[i] = (i / 5) % 2 == 0 ? 0.0f : -0.0f; break;
        case 3: logits[i] = -spread(rng) * 1e-30f; break;                    // tiny, near zero
        default: logits[i] = i % 15 == 4 ? -INFINITY : (i % 25 == 9 ? INFINITY : spread(rng)); break;
      }
    }
    for (int32_t k : {1, 2, n / 20 + 1, n / 16, n / 16 + 1, n / 2 + 1, n}) {
      if (k < 1 || k > n) continue;
      std::vector<int32_t> got;
      order_candidates(logits.data(), n, k, &got);
      EXPECT_EQ(got, reference_order(logits, k)) << "n " << n << ", k " << k;
    }
  }
}

}  // namespace
}  // namespace kvmesh
