// Model weights in fp32 host memory, loaded from an HF GPT-2 checkpoint and checked against the config.
#pragma once

#include <string>
#include <vector>

#include "common/config.h"
#include "common/status.h"

namespace kvmesh {

class Checkpoint;

struct LayerWeights {
  std::vector<float> ln1_w, ln1_b;    // [E]
  std::vector<float> qkv_w;           // [E, 3E]  Conv1D layout [in, out]
  std::vector<float> qkv_b;           // [3E]
  std::vector<float> attn_out_w;      // [E, E]
  std::vector<float> attn_out_b;      // [E]
  std::vector<float> ln2_w, ln2_b;    // [E]
  std::vector<float> fc1_w;           // [E, I]
  std::vector<float> fc1_b;           // [I]
  std::vector<float> fc2_w;           // [I, E]
  std::vector<float> fc2_b;           // [E]
};

struct ModelWeights {
  std::vector<float> wte;             // [V, E]  embedding and tied LM head
  std::vector<float> wpe;             // [P, E]
  std::vector<LayerWeights> layers;
  std::vector<float> lnf_w, lnf_b;    // [E]
};

// Reads every tensor of the model; each must exist with the shape the config implies.
Result<ModelWeights> load_weights(const Checkpoint& checkpoint, const ModelConfig& config);

}  // namespace kvmesh
