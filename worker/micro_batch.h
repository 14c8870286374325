// MicroBatch: a contiguous group of a step's sequences that a pipeline stage runs together.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "worker/backend.h"
#include "worker/buffer.h"

namespace kvmesh {

struct MicroBatch {
  size_t seq_begin = 0, seq_end = 0;  // indices into StepPlan::seqs
  std::vector<int32_t> tokens;        // [T]
  BatchLayout batch;
  std::vector<int32_t> logit_rows;    // rows of x that need logits
  Buffer x;                           // [T, E] activations in backend memory (kept while being sent)
  std::vector<float> logits;          // [R, V] on the sampling rank
  // Every logit row is a plain greedy draw (no log-probs, penalties or banned tokens) on one TP
  // rank: the argmax is taken where the logits are, and only `greedy` comes back.
  bool greedy_only = false;
  std::vector<RowStats> greedy;       // [R] when greedy_only
};

}  // namespace kvmesh
