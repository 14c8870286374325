// Model weights of one rank's shard in fp32 host memory, read straight from the checkpoint's byte
// ranges (Megatron split: qkv/fc1 by columns, attn_out/fc2 by rows, wte by vocabulary rows).
#pragma once

#include <string>
#include <vector>

#include "common/config.h"
#include "common/status.h"
#include "worker/parallel.h"

namespace kvmesh {

class WeightSource;

// Shapes use E = n_embd, El = local heads * head_dim, Il = local MLP width, Vl = local vocab rows.
struct LayerWeights {
  std::vector<float> ln1_w, ln1_b;    // [E]
  std::vector<float> qkv_w;           // [E, 3 El]  columns: local Q | local K | local V
  std::vector<float> qkv_b;           // [3 El]
  std::vector<float> attn_out_w;      // [El, E]
  std::vector<float> attn_out_b;      // [E]   added once, after the all-reduce
  std::vector<float> ln2_w, ln2_b;    // [E]
  std::vector<float> fc1_w;           // [E, Il]
  std::vector<float> fc1_b;           // [Il]
  std::vector<float> fc2_w;           // [Il, E]
  std::vector<float> fc2_b;           // [E]   added once, after the all-reduce
};

struct ModelWeights {
  std::vector<float> wte;             // [Vl, E] vocabulary rows of this TP rank (first/last stage)
  std::vector<float> wpe;             // [P, E] (first stage)
  std::vector<LayerWeights> layers;   // this stage's layers
  std::vector<float> lnf_w, lnf_b;    // [E] (last stage)
  std::vector<float> head;            // [Vl, E] an untied head's vocabulary rows (last stage); empty: wte
};

// invalid_argument naming the first few tensors of the checkpoint that the model the config
// describes does not use (a config.json with fewer layers than the weights: a different model).
Status check_no_unused_tensors(const WeightSource& source, const ModelConfig& config);

// Reads this rank's shard; every tensor must exist with the shape the config implies, and no
// other tensor may be there (check_no_unused_tensors).
Result<ModelWeights> load_weights(const WeightSource& source, const ModelConfig& config,
                                  const ParallelLayout& layout);

// Bytes of fp32 weights a rank holds (for --dry-run and logs).
int64_t shard_weight_elems(const ModelConfig& config, const ParallelLayout& layout);

}  // namespace kvmesh
