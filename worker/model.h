// Model: the GPT-2 forward over a ragged batch and the paged KV cache, written once over Backend ops.
#pragma once

#include <memory>
#include <vector>

#include "common/config.h"
#include "worker/backend.h"
#include "worker/weights.h"

namespace kvmesh {

class Model {
 public:
  Model(const ModelConfig& config, ModelWeights weights, std::unique_ptr<Backend> backend);

  // Runs every layer over the batch (writing its K/V into pool), then the LM head for the rows
  // listed in logit_rows. tokens: [T]; logits: [logit_rows.size(), vocab].
  void forward(const std::vector<int32_t>& tokens, const BatchLayout& batch,
               const std::vector<int32_t>& logit_rows, KvPoolView pool, std::vector<float>* logits);

  const ModelConfig& config() const { return config_; }
  Backend& backend() { return *backend_; }

 private:
  void layer_forward(int layer, const BatchLayout& batch, KvPoolView pool, int64_t n_tokens);

  ModelConfig config_;
  ModelWeights w_;
  std::unique_ptr<Backend> backend_;
  // Activations, resized per step.
  std::vector<float> x_;      // [T, E] residual stream
  std::vector<float> h_;      // [T, E] normalised input / attention output
  std::vector<float> qkv_;    // [T, 3E]
  std::vector<float> attn_;   // [T, E]
  std::vector<float> mlp_;    // [T, I]
  std::vector<float> rows_;   // [R, E] final rows for the LM head
};

}  // namespace kvmesh
