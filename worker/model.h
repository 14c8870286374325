// Model: the decoder forward (as the model description says) of one pipeline stage over a ragged
// batch and the paged KV cache, written
// once over Backend ops on the backend's memory; tensor parallelism lives only at the edges
// (embedding, row-parallel outputs, LM head) through Collectives.
#pragma once

#include <memory>
#include <vector>

#include "common/config.h"
#include "common/status.h"
#include "worker/backend.h"
#include "worker/collectives.h"
#include "worker/decode_graphs.h"
#include "worker/parallel.h"
#include "worker/placed_weights.h"
#include "worker/weights.h"

namespace kvmesh {

// The last stage's work on a micro-batch's logits: rows[i] of x gives logit row i. The rows come
// in three runs, each brought back its own way:
//   [0, n_greedy)                        plain greedy draws: argmax and log-sum-exp (row_stats)
//   [n_greedy, n_greedy + draws.size())  draws sampled where the logits are (sample_rows)
//   the rest                             full logits to the host
// With several TP ranks the shards are gathered to TP rank 0 first, which alone gets results.
struct HeadWork {
  std::vector<int32_t> rows;
  int32_t n_greedy = 0;
  std::vector<RowDraw> draws;
  std::vector<RowStats> greedy;    // [n_greedy]
  std::vector<RowSample> samples;  // [draws.size()]
  std::vector<float> logits;       // [rows.size() - n_greedy - draws.size(), vocab] (TP rank 0)

  int64_t n_host_rows() const {
    return static_cast<int64_t>(rows.size()) - n_greedy - static_cast<int64_t>(draws.size());
  }
};

class Model {
 public:
  // Places the weights with the backend (host weights are kept only when the backend reads host
  // memory). Errors: the backend could not hold them.
  static Result<std::unique_ptr<Model>> create(const ModelConfig& config,
                                               const ParallelLayout& layout, ModelWeights weights,
                                               std::unique_ptr<Backend> backend,
                                               Collectives* collectives);

  // x and the activations below are backend memory.
  // First stage: x = wte[tokens] + wpe[positions].                          x: [T, E]
  Status embed(const std::vector<int32_t>& tokens, const BatchLayout& batch, float* x);
  // This stage's layers over x in place, writing their K/V into pool.       x: [T, E]
  // Decode steps replay captured graphs when they are on (use_decode_graphs).
  Status run_layers(const BatchLayout& batch, KvPoolView pool, int64_t n_tokens, float* x);
  // Turns decode graphs on when the backend can capture this stage's layers (with more than one
  // TP rank, only a backend that records collectives can), or off. Errors: their buffers did not
  // fit (graphs stay off); the ranks of a stage must then agree to turn them off everywhere.
  Status use_decode_graphs(bool on);
  // Graphs recorded so far (one per batch-size bucket used); 0 with graphs off.
  int n_decode_graphs() const { return graphs_ ? graphs_->n_recorded() : 0; }
  // Last stage: the logits of work->rows of x and what work asks of them (HeadWork). Only the
  // greedy tokens, the samples and the host rows' logits reach the host; other TP ranks
  // contribute their vocabulary shard and get nothing.
  Status head_outputs(const float* x, HeadWork* work);

  const ModelConfig& config() const { return config_; }
  const ParallelLayout& layout() const { return layout_; }
  int n_local_layers() const { return static_cast<int>(w_.layers.size()); }
  int n_local_heads() const { return static_cast<int>(layout_.heads(config_).size()); }
  Backend& backend() { return *backend_; }

 private:
  Model(const ModelConfig& config, const ParallelLayout& layout, std::unique_ptr<Backend> backend,
        Collectives* collectives);
  // The layers' ops over n rows of x with the given activations.
  void layers(const BatchLayout& batch, KvPoolView pool, int64_t n, float* x, const LayerScratch& s);
  // An activation that only feeds matrix products (LayerNorm, attention and MLP activation
  // outputs) over data ([rows, cols]): in the dtype the backend's products take.
  TensorView operand_view(float* data, int64_t rows, int64_t cols) const;
  void attention_block(int layer, const BatchLayout& batch, KvPoolView pool, int64_t n, float* x,
                       const LayerScratch& s);
  void mlp_block(int layer, int64_t n, float* x, const LayerScratch& s);
  // This rank's vocabulary-shard logits of the listed rows of x, into local_ ([R, Vl]).
  Status head(const float* x, const std::vector<int32_t>& rows);
  // Several TP ranks: the R rows' vocabulary shards gathered into full_ ([R, vocab]) on TP rank 0.
  Status gather_logits(int64_t r);

  ModelConfig config_;
  ParallelLayout layout_;
  std::unique_ptr<Backend> backend_;
  PlacedWeights w_;
  Collectives* collectives_;
  int64_t el_;  // local attention width: local heads * head_dim
  int64_t il_;  // local MLP width
  DType operand_dtype_;  // the backend's matmul_input_dtype(), for activations that feed only products
  // Scratch activations in backend memory, grown per call.
  Buffer h_;         // [T, E]
  Buffer qkv_;       // [T, 3 El]
  Buffer attn_;      // [T, El]
  Buffer mlp_;       // [T, Il]
  Buffer ln_;        // [T, E] LayerNorm outputs (sized as fp32)
  Buffer rows_;      // [R, E]
  Buffer rows_ln_;   // [R, E] their final LayerNorm (sized as fp32)
  Buffer local_;     // [R, Vl]
  Buffer gathered_;  // [tp, R, Vl]
  Buffer full_;      // [R, V] on TP rank 0
  std::unique_ptr<DecodeGraphs> graphs_;  // null while decode graphs are off
};

}  // namespace kvmesh
