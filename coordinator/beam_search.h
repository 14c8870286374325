// BeamSearch: one group's beam bookkeeping with Hugging Face's semantics: every step, the best
// candidates over all running beams become the next running beams, candidates that end (a stop
// token, or the length limit) join a heap of the best `width` finished hypotheses scored
// cumulative log-prob / generated length ^ length_penalty, and early_stopping decides when to stop.
#pragma once

#include <cstdint>
#include <vector>

#include "common/protocol.h"

namespace kvmesh {

// The request field early_stopping: false (stop when no running beam can still beat the worst
// finished one, judged at the current length), true (stop as soon as `width` hypotheses finished),
// "never" (judged at the longest possible length when length_penalty > 0).
enum class EarlyStopping : uint8_t { heuristic, when_full, never };

// One continuation: running beam `parent` followed by `token`.
struct BeamCandidate {
  int32_t parent = 0;
  int32_t token = 0;
  float logprob = 0;     // of the token alone
  float cumulative = 0;  // of the parent's generated tokens plus this one
  bool ends = false;     // a stop token, or the last token the length allows
};

struct FinishedBeam {
  BeamCandidate last;    // the candidate that ended it
  double score = 0;      // cumulative / n_generated ^ length_penalty
  int32_t n_generated = 0;
  int64_t key = 0;       // the caller's handle for the hypothesis' tokens
};

class BeamSearch {
 public:
  // n_stop_tokens: how many token ids end a hypothesis (EOS and stop_token_ids).
  BeamSearch(int32_t width, float length_penalty, EarlyStopping early_stopping, int32_t max_new_tokens,
             int32_t n_stop_tokens);

  int32_t width() const { return width_; }
  // Candidates kept per step over all beams, and so the most any one beam must offer:
  // width * max(2, 1 + n_stop_tokens), so that stop tokens cannot crowd out every continuation.
  int32_t candidates_kept() const { return keep_; }

  struct Step {
    std::vector<BeamCandidate> running;   // next running beams, best first
    std::vector<FinishedBeam> finished;   // hypotheses that entered the heap this step
    std::vector<int64_t> evicted;         // keys pushed out of the heap this step
    bool done = false;
  };
  // `candidates`: every running beam's candidates (any order; `ends` set by the caller), made at
  // generated length n_generated (tokens each beam had before this step). New finished
  // hypotheses take keys next_key, next_key + 1, ...
  Step step(std::vector<BeamCandidate> candidates, int32_t n_generated, int64_t next_key);

  // The finished hypotheses, best first.
  std::vector<FinishedBeam> results() const;

 private:
  double normalise(float cumulative, int32_t length) const;

  int32_t width_;
  float length_penalty_;
  EarlyStopping early_stopping_;
  int32_t max_new_tokens_;
  int32_t keep_;
  std::vector<FinishedBeam> heap_;  // at most width_, any order
  bool improvement_possible_ = true;
};

}  // namespace kvmesh
