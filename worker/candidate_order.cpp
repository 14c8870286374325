// order_candidates: a partial sort for a few candidates, a least-significant-digit radix sort of
// the whole row otherwise.
#include "worker/candidate_order.h"

#include <algorithm>
#include <array>
#include <bit>
#include <numeric>
#include <utility>

namespace kvmesh {
namespace {

constexpr int kDigitBits = 11;
constexpr uint32_t kBuckets = 1u << kDigitBits;
constexpr int32_t kPartialSortShare = 16;  // partial sort when k <= n / 16

// Ascending keys give (logit descending): flip a float's bits so that unsigned order is float
// order, then invert. -0 is taken as +0, as comparisons of the two find them equal.
uint32_t descending_key(float x) {
  if (x == 0.0f) x = 0.0f;
  const uint32_t u = std::bit_cast<uint32_t>(x);
  const uint32_t ascending = (u & 0x80000000u) != 0 ? ~u : (u | 0x80000000u);
  return ~ascending;
}

// Stable sort of (keys, ids) by key, one kDigitBits digit per pass, lowest first; a pass whose
// digit is the same for every key is skipped. Stability keeps equal keys in id order.
void radix_sort(std::vector<uint32_t>& keys, std::vector<int32_t>& ids) {
  const size_t n = keys.size();
  std::vector<uint32_t> keys_out(n);
  std::vector<int32_t> ids_out(n);
  std::array<uint32_t, kBuckets> count;
  for (int shift = 0; shift < 32; shift += kDigitBits) {
    count.fill(0);
    for (uint32_t key : keys) ++count[(key >> shift) & (kBuckets - 1)];
    if (*std::max_element(count.begin(), count.end()) == n) continue;
    uint32_t start = 0;
    for (uint32_t& c : count) start += std::exchange(c, start);
    for (size_t i = 0; i < n; ++i) {
      const uint32_t at = count[(keys[i] >> shift) & (kBuckets - 1)]++;
      keys_out[at] = keys[i];
      ids_out[at] = ids[i];
    }
    keys.swap(keys_out);
    ids.swap(ids_out);
  }
}

}  // namespace

void order_candidates(const float* logits, int32_t n, int32_t k, std::vector<int32_t>* ids) {
  ids->resize(static_cast<size_t>(n));
  std::iota(ids->begin(), ids->end(), 0);
  if (static_cast<int64_t>(k) * kPartialSortShare <= n) {
    auto better = [&](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    };
    std::partial_sort(ids->begin(), ids->begin() + k, ids->end(), better);
  } else {
    std::vector<uint32_t> keys(static_cast<size_t>(n));
    for (int32_t i = 0; i < n; ++i) keys[static_cast<size_t>(i)] = descending_key(logits[i]);
    radix_sort(keys, *ids);
  }
  ids->resize(static_cast<size_t>(k));
}

}  // namespace kvmesh
