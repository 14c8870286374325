// Sampling from full-vocabulary logits: logit edits (bias, penalties, bans), greedy, temperature,
// top-k, top-p, min-p, log-probs, and the counter-based random draw keyed by (seed, position).
#pragma once

#include <cstdint>
#include <vector>

#include "common/protocol.h"
#include "worker/logit_edit.h"

namespace kvmesh {

// Uniform double in [0, 1) from (seed, position): the same for any batch or parallel layout.
double counter_uniform(uint64_t seed, int64_t position);

// log-softmax of logits[0, n) in double.
void log_softmax(const float* logits, int32_t n, std::vector<double>* out);

// Log-prob of `chosen` and the top-n_top entries (ties broken by lower id).
PositionLogprobs position_logprobs(const std::vector<double>& logprobs, int32_t chosen,
                                   int32_t n_top);

// What a draw does to its logits before sampling, one edit per token by ascending token (tokens
// outside [0, n) are left out): the logit bias first, then the penalties when they are on (vLLM
// semantics: repetition over prompt + output tokens, presence/frequency over output tokens; the
// first n_history_prompt of history_ids are the prompt), and the banned tokens.
std::vector<LogitEdit> logit_edits(const SamplingParams& params, const std::vector<int32_t>& history_ids,
                                   int32_t n_history_prompt, const std::vector<int32_t>& banned, int32_t n);

// One token's logit x after its edit (the order of LogitEdit).
float edited_logit(const SamplingParams& params, const LogitEdit& edit, float x);

// edited_logit on each edit's token of logits[0, n).
void apply_logit_edits(const SamplingParams& params, const std::vector<LogitEdit>& edits, float* logits,
                       int32_t n);

// Picks the next token for a token at `position` from (penalised) logits.
int32_t sample_token(const SamplingParams& params, const float* logits, int32_t n, int64_t position);

}  // namespace kvmesh
