// LogitEdit: one token's change to its logit before a draw (logit bias, penalties, a ban), which the
// host sampler (worker/sampler.cpp) and the device sampler (worker/cuda/sample_rows.cu) both apply.
// A plain struct, so device code reads the host's array as it is.
#pragma once

#include <cstdint>

namespace kvmesh {

constexpr uint32_t kEditBias = 1;      // add `bias`
constexpr uint32_t kEditRepeated = 2;  // the token is in the prompt or output: repetition penalty
constexpr uint32_t kEditBanned = 4;    // -inf: never drawn

// Applied in this order, each step rounded to float on its own: + bias (kEditBias); the repetition
// penalty (kEditRepeated: a positive logit divided by it, any other multiplied); minus
// (frequency_penalty * output_count + presence_penalty) when output_count > 0; -inf (kEditBanned).
struct LogitEdit {
  int32_t token = 0;
  uint32_t flags = 0;
  float bias = 0.0f;
  int32_t output_count = 0;  // times the token is in the output so far
};

}  // namespace kvmesh
