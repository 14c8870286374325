// ParallelLayout: where a rank sits in the TP x PP grid and which layers, heads, MLP columns and
// vocabulary rows it owns. Pure arithmetic (no MPI), shared by workers, the loader and --dry-run.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "common/config.h"
#include "common/status.h"

namespace kvmesh {

struct Range {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
};

// Even split of n items into parts; part i gets [begin, end), the first n % parts get one more.
Range balanced_range(int64_t n, int parts, int i);

struct ParallelLayout {
  int tp = 1;
  int pp = 1;
  int rank = 0;

  int world_size() const { return tp * pp; }
  int tp_rank() const { return rank % tp; }
  int pp_rank() const { return rank / tp; }
  bool first_stage() const { return pp_rank() == 0; }
  bool last_stage() const { return pp_rank() == pp - 1; }
  // The rank that samples: TP rank 0 of the last stage.
  int sampler_rank() const { return (pp - 1) * tp; }
  bool is_sampler() const { return rank == sampler_rank(); }

  Range layers(const ModelConfig& c) const { return balanced_range(c.n_layer, pp, pp_rank()); }
  Range heads(const ModelConfig& c) const {
    return {c.n_head / tp * tp_rank(), c.n_head / tp * (tp_rank() + 1)};
  }
  Range inner(const ModelConfig& c) const {
    return {c.n_inner / tp * tp_rank(), c.n_inner / tp * (tp_rank() + 1)};
  }
  // The vocabulary padded to a multiple of tp; padded rows are zero and never sampled.
  int64_t padded_vocab(const ModelConfig& c) const { return (c.vocab_size + tp - 1) / tp * tp; }
  Range vocab(const ModelConfig& c) const {
    const int64_t per = padded_vocab(c) / tp;
    return {per * tp_rank(), per * (tp_rank() + 1)};
  }
};

// Checks a layout against a model and the launched world: world size == tp * pp, heads and the
// MLP width divisible by tp, pp <= layers. Messages say what to change.
Status validate_layout(const ModelConfig& config, int tp, int pp, int world_size);

}  // namespace kvmesh
