// The host side of the CUDA sample_rows as pure functions: rows' draws packed into the arrays the
// kernel reads (pack_sample_draws), and its per-row results unpacked into RowSample (unpack_samples).
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "worker/backend.h"
#include "worker/cuda/layout/kernel_args.h"
#include "worker/logit_edit.h"

namespace kvmesh {

// What one launch of sample_rows reads: a SampleDraw per row, every row's logit edits one after
// another (draws[i] points into them), and how many rows take part in the sort.
struct SampleStaging {
  std::vector<SampleDraw> draws;
  std::vector<LogitEdit> edits;
  int64_t n_sorted = 0;  // rows with a sort slot, numbered 0.. in row order
};

// draws[0, r) over rows of v logits; each n_top at most kMaxSampleTop (checked: a broken invariant).
// invalid_argument when the sorted rows hold 2^31 logits or more.
Result<SampleStaging> pack_sample_draws(const RowDraw* draws, int64_t r, int64_t v);

// out[0, r) from the kernel's results for the draws packed in draws (its n_top: log-probs or not).
void unpack_samples(const std::vector<SampleDraw>& draws, const SampleOut* results, RowSample* out);

}  // namespace kvmesh
