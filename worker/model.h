// Model: the GPT-2 forward of one pipeline stage over a ragged batch and the paged KV cache, written
// once over Backend ops; tensor parallelism lives only at the edges (embedding, row-parallel
// outputs, LM head) through Collectives.
#pragma once

#include <memory>
#include <vector>

#include "common/config.h"
#include "worker/backend.h"
#include "worker/collectives.h"
#include "worker/parallel.h"
#include "worker/weights.h"

namespace kvmesh {

class Model {
 public:
  Model(const ModelConfig& config, const ParallelLayout& layout, ModelWeights weights,
        std::unique_ptr<Backend> backend, Collectives* collectives);

  // First stage: x = wte[tokens] + wpe[positions].                          x: [T, E]
  void embed(const std::vector<int32_t>& tokens, const BatchLayout& batch, float* x);
  // This stage's layers over x in place, writing their K/V into pool.       x: [T, E]
  void run_layers(const BatchLayout& batch, KvPoolView pool, int64_t n_tokens, float* x);
  // Last stage: logits of the listed rows of x. TP rank 0 gets [R, vocab]; other TP ranks
  // contribute their vocabulary shard and get nothing.
  void logits(const float* x, const std::vector<int32_t>& rows, std::vector<float>* out);

  const ModelConfig& config() const { return config_; }
  const ParallelLayout& layout() const { return layout_; }
  int n_local_layers() const { return static_cast<int>(w_.layers.size()); }
  int n_local_heads() const { return static_cast<int>(layout_.heads(config_).size()); }
  Backend& backend() { return *backend_; }

 private:
  void attention_block(int layer, const BatchLayout& batch, KvPoolView pool, int64_t n, float* x);
  void mlp_block(int layer, int64_t n, float* x);

  ModelConfig config_;
  ParallelLayout layout_;
  ModelWeights w_;
  std::unique_ptr<Backend> backend_;
  Collectives* collectives_;
  int64_t el_;  // local attention width: local heads * head_dim
  int64_t il_;  // local MLP width
  // Scratch activations, resized per call.
  std::vector<float> h_;       // [T, E]
  std::vector<float> qkv_;     // [T, 3 El]
  std::vector<float> attn_;    // [T, El]
  std::vector<float> mlp_;     // [T, Il]
  std::vector<float> rows_;    // [R, E]
  std::vector<float> local_;   // [R, Vl]
  std::vector<float> gathered_;  // [tp, R, Vl]
};

}  // namespace kvmesh
