// The structs kernels read from arrays the host stages (prefill tiles, sample draws and results):
// plain C++ without CUDA headers, so host code built without CUDA lays them out as the device reads them.
#pragma once

#include <cstdint>

namespace kvmesh {

// Up to kPrefillTileRows consecutive query rows of one sequence's prefill chunk: rows
// [row_begin, row_begin + n_rows) at positions n_past.., block table at tables[table_at].
constexpr int kPrefillTileRows = 64;
struct PrefillTile {
  int32_t row_begin = 0;
  int32_t n_rows = 0;
  int32_t n_past = 0;
  int32_t table_at = 0;
};
static_assert(sizeof(PrefillTile) == 4 * sizeof(int32_t), "tiles are staged as 4 int32 each");

// One row's draw for launch_sample_rows: SamplingParams (worker/sampler.cpp) and where its logit
// edits sit in the edits array.
struct SampleDraw {
  float temperature = 1.0f;
  float top_p = 1.0f;
  float min_p = 0.0f;
  int32_t top_k = 0;
  uint64_t seed = 0;
  int64_t position = 0;  // the random draw's counter
  int32_t greedy = 0;    // nonzero: the argmax (SamplingParams::greedy())
  int32_t n_top = -1;    // top log-probs wanted: -1 none, at most kMaxSampleTop
  // The row's place among the rows taking part in the sort (a draw, n_top > 0 or edits; v > 1),
  // counted from 0 in row order; -1: not sorted.
  int32_t sort_slot = -1;
  float repetition_penalty = 1.0f;
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  int32_t edit_begin = 0;  // edits [edit_begin, edit_begin + n_edits), tokens in [0, v)
  int32_t n_edits = 0;
};
constexpr int kMaxSampleTop = 32;

// One row's result: the token, its log-prob (logit - log-sum-exp of the raw logits) and the top
// n_top (id, log-prob) by logit descending, ties by lower id (n_top = min(draw's n_top, v)).
struct SampleOut {
  int32_t token = 0;
  float logprob = 0.0f;
  int32_t n_top = 0;
  int32_t top_ids[kMaxSampleTop];
  float top_logprobs[kMaxSampleTop];
};

}  // namespace kvmesh
