// Sampling from full-vocabulary logits: penalties, greedy/temperature/top-k/top-p/min-p, log-probs,
// and the counter-based random draw keyed by (seed, position).
#pragma once

#include <cstdint>
#include <vector>

#include "common/protocol.h"

namespace kvmesh {

// Uniform double in [0, 1) from (seed, position): the same for any batch or parallel layout.
double counter_uniform(uint64_t seed, int64_t position);

// log-softmax of logits[0, n) in double.
void log_softmax(const float* logits, int32_t n, std::vector<double>* out);

// Log-prob of `chosen` and the top-n_top entries (ties broken by lower id).
PositionLogprobs position_logprobs(const std::vector<double>& logprobs, int32_t chosen,
                                   int32_t n_top);

// Adds each logit_bias entry to its token's logit (tokens outside [0, n) are skipped).
void apply_logit_bias(const SamplingParams& params, float* logits, int32_t n);

// Applies repetition/presence/frequency penalties to logits in place (vLLM semantics:
// repetition over prompt + output tokens, presence/frequency over output tokens).
void apply_penalties(const SamplingParams& params, const std::vector<int32_t>& history_ids,
                     int32_t n_history_prompt, float* logits, int32_t n);

// Picks the next token for a token at `position` from (penalised) logits.
int32_t sample_token(const SamplingParams& params, const float* logits, int32_t n, int64_t position);

}  // namespace kvmesh
