// MicroBatch: a contiguous group of a step's sequences that a pipeline stage runs together, and
// where each sequence's logit rows come back on the sampling rank.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/protocol.h"
#include "worker/backend.h"
#include "worker/buffer.h"
#include "worker/model.h"

namespace kvmesh {

// How a sequence's logit rows come back (see HeadWork).
enum class RowRoute : uint8_t {
  none,    // no logit rows this step
  greedy,  // one plain greedy draw: the argmax alone (HeadWork::greedy)
  device,  // one draw sampled where the logits are (HeadWork::samples)
  host,    // full logits (HeadWork::logits): prompt log-probs (and the draw after them)
};

struct SeqRows {
  RowRoute route = RowRoute::none;
  int32_t first = 0;  // index of its first row in the route's output
};

struct MicroBatch {
  size_t seq_begin = 0, seq_end = 0;  // indices into StepPlan::seqs
  std::vector<int32_t> tokens;        // [T]
  BatchLayout batch;
  Buffer x;                           // [T, E] activations in backend memory (kept while being sent)
  std::vector<SeqRows> seq_rows;      // [seq_end - seq_begin]
  HeadWork head;                      // the logit rows and what comes back of them
};

// Fills mb->seq_rows and mb->head's rows and draws from the plan's sequences of the micro-batch
// (mb->batch already laid out): plain greedy draws first, then the draws a backend samples where
// the logits are (with their logit edits over [0, vocab_size)), then the rows that need full logits
// on the host.
void route_logit_rows(const StepPlan& plan, int32_t vocab_size, MicroBatch* mb);

}  // namespace kvmesh
