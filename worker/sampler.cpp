// Sampling from full-vocabulary logits: logit edits (bias, penalties, bans), greedy, temperature,
// top-k, top-p, min-p, log-probs, and the counter-based random draw keyed by (seed, position).
#include "worker/sampler.h"

#include "common/hashing.h"
#include "worker/candidate_order.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

namespace kvmesh {
namespace {

int32_t argmax(const float* logits, int32_t n) {
  int32_t best = 0;
  for (int32_t i = 1; i < n; ++i)
    if (logits[i] > logits[best]) best = i;
  return best;
}

}  // namespace

double counter_uniform(uint64_t seed, int64_t position) {
  const uint64_t h = splitmix64(splitmix64(seed) ^ static_cast<uint64_t>(position));
  return static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0);  // 53 bits
}

void log_softmax(const float* logits, int32_t n, std::vector<double>* out) {
  out->resize(static_cast<size_t>(n));
  double max_v = -INFINITY;
  for (int32_t i = 0; i < n; ++i) max_v = std::max(max_v, static_cast<double>(logits[i]));
  double sum = 0.0;
  for (int32_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i]) - max_v);
  const double log_z = max_v + std::log(sum);
  for (int32_t i = 0; i < n; ++i) (*out)[i] = static_cast<double>(logits[i]) - log_z;
}

PositionLogprobs position_logprobs(const std::vector<double>& logprobs, int32_t chosen,
                                   int32_t n_top) {
  PositionLogprobs result;
  const auto n = static_cast<int32_t>(logprobs.size());
  if (chosen >= 0 && chosen < n) result.chosen = {chosen, static_cast<float>(logprobs[chosen])};
  n_top = std::min(n_top, n);
  if (n_top <= 0) return result;
  std::vector<int32_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  auto better = [&](int32_t a, int32_t b) {
    return logprobs[a] > logprobs[b] || (logprobs[a] == logprobs[b] && a < b);
  };
  std::partial_sort(idx.begin(), idx.begin() + n_top, idx.end(), better);
  for (int32_t i = 0; i < n_top; ++i)
    result.top.push_back({idx[i], static_cast<float>(logprobs[idx[i]])});
  return result;
}

std::vector<LogitEdit> logit_edits(const SamplingParams& p, const std::vector<int32_t>& history_ids,
                                   int32_t n_history_prompt, const std::vector<int32_t>& banned, int32_t n) {
  std::map<int32_t, LogitEdit> by_token;
  auto edit_of = [&](int32_t t) -> LogitEdit& {
    LogitEdit& e = by_token[t];
    e.token = t;
    return e;
  };
  for (const TokenBias& b : p.logit_bias) {
    if (b.token < 0 || b.token >= n) continue;
    LogitEdit& e = edit_of(b.token);
    e.flags |= kEditBias;
    e.bias = b.bias;
  }
  if (p.has_penalties()) {
    for (size_t i = 0; i < history_ids.size(); ++i) {
      const int32_t t = history_ids[i];
      if (t < 0 || t >= n) continue;
      LogitEdit& e = edit_of(t);
      if (p.repetition_penalty != 1.0f) e.flags |= kEditRepeated;
      if (static_cast<int32_t>(i) >= n_history_prompt) ++e.output_count;
    }
  }
  for (int32_t t : banned)
    if (t >= 0 && t < n) edit_of(t).flags |= kEditBanned;
  std::vector<LogitEdit> edits;
  edits.reserve(by_token.size());
  for (const auto& [token, e] : by_token)
    if (e.flags != 0 || e.output_count > 0) edits.push_back(e);
  return edits;
}

float edited_logit(const SamplingParams& p, const LogitEdit& e, float x) {
  if ((e.flags & kEditBias) != 0) x += e.bias;
  if ((e.flags & kEditRepeated) != 0) x = x > 0 ? x / p.repetition_penalty : x * p.repetition_penalty;
  if (e.output_count > 0) x -= p.frequency_penalty * static_cast<float>(e.output_count) + p.presence_penalty;
  if ((e.flags & kEditBanned) != 0) x = -INFINITY;
  return x;
}

void apply_logit_edits(const SamplingParams& p, const std::vector<LogitEdit>& edits, float* logits, int32_t n) {
  for (const LogitEdit& e : edits)
    if (e.token >= 0 && e.token < n) logits[e.token] = edited_logit(p, e, logits[e.token]);
}

int32_t sample_token(const SamplingParams& p, const float* logits, int32_t n, int64_t position) {
  if (p.greedy()) return argmax(logits, n);
  // Candidates sorted by logit (desc, ties by id); top-k cuts the list first.
  const int32_t k = (p.top_k > 0 && p.top_k < n) ? p.top_k : n;
  std::vector<int32_t> idx;
  order_candidates(logits, n, k, &idx);

  const double inv_t = 1.0 / static_cast<double>(p.temperature);
  const double max_l = static_cast<double>(logits[idx[0]]) * inv_t;
  std::vector<double> probs(idx.size());
  for (size_t i = 0; i < idx.size(); ++i) {
    probs[i] = std::exp(static_cast<double>(logits[idx[i]]) * inv_t - max_l);
  }
  // min-p: drop tokens below min_p * p_max; top-p: keep the smallest prefix with mass >= top_p.
  size_t keep = idx.size();
  if (p.min_p > 0.0f) {
    const double floor_p = static_cast<double>(p.min_p) * probs[0];
    while (keep > 1 && probs[keep - 1] < floor_p) --keep;
  }
  double kept_mass = 0.0;
  for (size_t i = 0; i < keep; ++i) kept_mass += probs[i];
  if (p.top_p < 1.0f) {
    double cum = 0.0;
    const double target = static_cast<double>(p.top_p) * kept_mass;
    for (size_t i = 0; i < keep; ++i) {
      cum += probs[i];
      if (cum >= target) {
        keep = i + 1;
        break;
      }
    }
    kept_mass = 0.0;
    for (size_t i = 0; i < keep; ++i) kept_mass += probs[i];
  }
  const double u = counter_uniform(p.seed, position) * kept_mass;
  double cum = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    cum += probs[i];
    if (u < cum) return idx[i];
  }
  return idx[keep - 1];
}

}  // namespace kvmesh
