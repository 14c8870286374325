// What a client asks for (GenerationRequest) and what it gets back, whole or as streamed deltas.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/protocol.h"
#include "coordinator/beam_search.h"

namespace kvmesh {

// One prompt to continue: an already tokenized prompt and how. With best_of > 1 it is a sequence
// group: best_of sequences share the prompt's KV pages; n of them are returned (delta.index).
struct GenerationRequest {
  std::string request_id;               // for logs; unique per engine
  std::vector<int32_t> prompt_ids;
  int32_t max_tokens = 16;
  int32_t min_tokens = 0;               // EOS and stop conditions are ignored before this many
  SamplingParams sampling;
  std::vector<std::string> stop;        // stop strings (not included in the text)
  std::vector<int32_t> stop_token_ids;  // included in token_ids, their text is not emitted
  bool ignore_eos = false;
  int32_t prompt_logprobs = -1;         // >= 0: log-probs (+ top-N) of every prompt token after the first
  std::string cache_salt;               // isolates prefix-cache reuse between tenants
  int32_t n = 1;                        // sequences returned
  int32_t best_of = 1;                  // sequences generated (>= n); the beam width with beam search
  bool beam_search = false;             // deterministic beam search instead of sampling
  float length_penalty = 1.0f;          // beam scores: cumulative log-prob / length ^ length_penalty
  EarlyStopping early_stopping = EarlyStopping::heuristic;

  int32_t group_size() const { return best_of > n ? best_of : n; }
  // Sample i of a group draws with its own seed (sample 0 keeps the request's).
  uint64_t sample_seed(int32_t i) const;
};

enum class FinishReason { none, stop, length, cancelled, error };
const char* finish_reason_name(FinishReason reason);  // "stop", "length", ... ("" for none)

// What a sequence produced since its previous delta. The last delta has finish != none.
struct GenerationDelta {
  int32_t index = 0;                         // which of the request's n returned sequences
  std::string text;                          // valid UTF-8, stop strings held back or trimmed
  std::vector<int32_t> token_ids;            // new generated tokens
  std::vector<PositionLogprobs> logprobs;    // one per new token when requested
  std::vector<PositionLogprobs> prompt_logprobs;  // prompt tokens 1.. (first delta only)
  FinishReason finish = FinishReason::none;
  std::string error;                         // when finish == error
  bool unavailable = false;                  // the error is the service's (a lost rank): 503
  std::string stop_string;                   // the stop string that ended it (finish == stop)
  int32_t stop_token = -1;                   // or the stop/EOS token that ended it
  int32_t n_prompt_tokens = 0;
  int32_t n_cached_tokens = 0;               // prompt tokens served from the prefix cache
  int32_t n_generated_tokens = 0;            // total so far
  double score = 0;                          // last delta: beam score, or cumulative log-prob
};

// Receives deltas on the engine thread; must not block.
using OutputSink = std::function<void(const GenerationDelta&)>;

// A finished sequence, accumulated from its deltas.
struct GenerationOutput {
  std::string text;
  std::vector<int32_t> token_ids;
  std::vector<PositionLogprobs> logprobs;
  std::vector<PositionLogprobs> prompt_logprobs;
  FinishReason finish = FinishReason::none;
  std::string error;
  bool unavailable = false;
  std::string stop_string;
  int32_t stop_token = -1;
  int32_t n_prompt_tokens = 0;
  int32_t n_cached_tokens = 0;
  double score = 0;

  void append(const GenerationDelta& delta);
  // The whole output as one final delta of returned sequence `index` (moves the contents out).
  GenerationDelta take_as_delta(int32_t index);
  bool finished() const { return finish != FinishReason::none; }
};

}  // namespace kvmesh
