// BeamSearch: candidate selection, the finished-hypothesis heap and the early-stopping rules.
#include "coordinator/beam_search.h"

#include <algorithm>
#include <cmath>

#include "common/status.h"

namespace kvmesh {

BeamSearch::BeamSearch(int32_t width, float length_penalty, EarlyStopping early_stopping,
                       int32_t max_new_tokens, int32_t n_stop_tokens)
    : width_(width), length_penalty_(length_penalty), early_stopping_(early_stopping),
      max_new_tokens_(max_new_tokens), keep_(std::max(2, 1 + n_stop_tokens) * width) {
  KVMESH_CHECK(width >= 1 && max_new_tokens >= 1 && n_stop_tokens >= 0);
}

double BeamSearch::normalise(float cumulative, int32_t length) const {
  return static_cast<double>(cumulative) / std::pow(static_cast<double>(length), length_penalty_);
}

BeamSearch::Step BeamSearch::step(std::vector<BeamCandidate> candidates, int32_t n_generated,
                                  int64_t next_key) {
  Step out;
  // The best candidates over all beams (ties: lower parent, then lower token, for determinism).
  std::stable_sort(candidates.begin(), candidates.end(), [](const BeamCandidate& a, const BeamCandidate& b) {
    if (a.cumulative != b.cumulative) return a.cumulative > b.cumulative;
    if (a.parent != b.parent) return a.parent < b.parent;
    return a.token < b.token;
  });
  if (candidates.size() > static_cast<size_t>(keep_)) candidates.resize(static_cast<size_t>(keep_));

  // Running beams: the best `width` candidates that do not end.
  for (const BeamCandidate& c : candidates) {
    if (static_cast<int32_t>(out.running.size()) == width_) break;
    if (!c.ends) out.running.push_back(c);
  }

  // Only the best `width` candidates may finish, and only while the heap can still change.
  const bool heap_full = static_cast<int32_t>(heap_.size()) == width_;
  const bool closed = (heap_full && early_stopping_ == EarlyStopping::when_full) || !improvement_possible_;
  for (size_t rank = 0; rank < candidates.size() && static_cast<int32_t>(rank) < width_ && !closed; ++rank) {
    const BeamCandidate& c = candidates[rank];
    if (!c.ends) continue;
    FinishedBeam f{c, normalise(c.cumulative, n_generated + 1), n_generated + 1, next_key++};
    if (static_cast<int32_t>(heap_.size()) < width_) {
      heap_.push_back(f);
      out.finished.push_back(f);
      continue;
    }
    auto worst = std::min_element(heap_.begin(), heap_.end(),
                                  [](const FinishedBeam& a, const FinishedBeam& b) { return a.score < b.score; });
    if (f.score <= worst->score) continue;
    out.evicted.push_back(worst->key);
    *worst = f;
    out.finished.push_back(f);
  }

  // Can a running beam still beat the worst finished hypothesis?
  const int32_t length = n_generated + 1;
  if (!out.running.empty()) {
    const int32_t best_length = early_stopping_ == EarlyStopping::never && length_penalty_ > 0.0f
                                    ? max_new_tokens_
                                    : length;
    const double best_possible = normalise(out.running.front().cumulative, best_length);
    double worst_finished = -1.0e9;
    if (static_cast<int32_t>(heap_.size()) == width_) {
      worst_finished = std::min_element(heap_.begin(), heap_.end(), [](const FinishedBeam& a, const FinishedBeam& b) {
                         return a.score < b.score;
                       })->score;
    }
    improvement_possible_ = improvement_possible_ && best_possible > worst_finished;
  }
  const bool all_finished = static_cast<int32_t>(heap_.size()) == width_ &&
                            early_stopping_ == EarlyStopping::when_full;
  out.done = out.running.empty() || !improvement_possible_ || all_finished || length >= max_new_tokens_;
  return out;
}

std::vector<FinishedBeam> BeamSearch::results() const {
  std::vector<FinishedBeam> out = heap_;
  std::stable_sort(out.begin(), out.end(),
                   [](const FinishedBeam& a, const FinishedBeam& b) { return a.score > b.score; });
  return out;
}

}  // namespace kvmesh
