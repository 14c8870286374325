// PlacedWeights: a rank's weights as the backend's ops read them: views of the host fp32 vectors on
// CPU with fp32 weights; otherwise the backend's own copies (bf16 matrices on CPU; narrow matrices
// and fp32 vectors in device memory on CUDA).
#pragma once

#include <vector>

#include "common/config.h"
#include "common/status.h"
#include "common/tensor.h"
#include "worker/backend.h"
#include "worker/parallel.h"
#include "worker/weights.h"

namespace kvmesh {

// Shapes as in LayerWeights (E, El, Il local widths).
struct PlacedLayer {
  TensorView ln1_w, ln1_b;   // [1, E]
  TensorView qkv_w, qkv_b;   // [E, 3 El], [1, 3 El]
  TensorView attn_out_w;     // [El, E]
  TensorView attn_out_b;     // [1, E]
  TensorView ln2_w, ln2_b;   // [1, E]
  TensorView fc1_w, fc1_b;   // [E, Il], [1, Il]
  TensorView fc2_w;          // [Il, E]
  TensorView fc2_b;          // [1, E]
};

struct PlacedWeights {
  TensorView wte;                   // [Vl, E] (first/last stage)
  TensorView wpe;                   // [P, E] (first stage)
  std::vector<PlacedLayer> layers;  // this stage's layers
  TensorView lnf_w, lnf_b;          // [1, E] (last stage)
  TensorView head;                  // [Vl, E] the LM head (last stage): wte when tied
  std::vector<Buffer> storage;      // what the backend allocated for them
};

// Places every tensor of `host`, releasing each host vector as soon as it is placed, so loading
// never holds a second full copy of the weights.
Result<PlacedWeights> place_weights(Backend& backend, ModelWeights& host, const ModelConfig& config,
                                    const ParallelLayout& layout);

}  // namespace kvmesh
