// The ops a model forward needs, behind one interface so CPU and CUDA run the same model code.
#pragma once

#include <cstdint>
#include <vector>

#include "common/config.h"
#include "common/tensor.h"

namespace kvmesh {

// One sequence's slice of a ragged batch.
struct SeqSpan {
  int32_t token_begin = 0;            // first row of this sequence in the batch
  int32_t n_tokens = 0;
  int32_t n_past = 0;                 // cached tokens before the first row
  const int32_t* block_table = nullptr;  // pages covering [0, n_past + n_tokens)
};

// Where a ragged batch's tokens live in the page pool.
struct BatchLayout {
  std::vector<SeqSpan> seqs;
  std::vector<int32_t> positions;     // [T]
  std::vector<int32_t> slots;         // [T] page * block_size + offset in page
};

// A page pool: [n_pages, n_layers, 2, block_size, n_heads, head_dim] (K then V per layer).
struct KvPoolView {
  void* data = nullptr;
  DType dtype = DType::f32;
  int32_t n_pages = 0;
  int32_t n_layers = 0;
  int32_t block_size = 0;
  int32_t n_heads = 0;
  int32_t head_dim = 0;

  int64_t page_elems() const {
    return static_cast<int64_t>(n_layers) * 2 * block_size * n_heads * head_dim;
  }
};

class Backend {
 public:
  virtual ~Backend() = default;

  // out[t] = wte[tokens[t] - vocab_begin] (zero when outside this shard's rows)
  //          + wpe[positions[t]] (when wpe is given)     wte: [Vl, E], out: [T, E]
  virtual void embed(const TensorView& wte, int64_t vocab_begin, const TensorView* wpe,
                     const int32_t* tokens, const int32_t* positions, TensorView out) = 0;
  // out = LayerNorm(x) * w + b over the last dim          x, out: [T, E]
  virtual void layer_norm(const TensorView& x, const TensorView& w, const TensorView& b, float eps,
                          TensorView out) = 0;
  // out = x @ w (+ b). w in Conv1D layout [in, out]        x: [T, in], out: [T, out]
  virtual void linear(const TensorView& x, const TensorView& w, const TensorView* b,
                      TensorView out) = 0;
  // x = act(x) in place
  virtual void activation(TensorView x, Activation act) = 0;
  // x += y
  virtual void add(TensorView x, const TensorView& y) = 0;
  // x[t] += b for every row t                              x: [T, E], b: [E]
  virtual void add_bias(TensorView x, const TensorView& b) = 0;
  // Writes K and V of every token (columns [E, 2E) and [2E, 3E) of qkv) into layer's pages.
  virtual void kv_write(const TensorView& qkv, const BatchLayout& batch, int32_t layer,
                        KvPoolView pool) = 0;
  // Causal attention of each token's Q (columns [0, E) of qkv) over its sequence's pages.
  // out: [T, E]
  virtual void attention(const TensorView& qkv, const BatchLayout& batch, int32_t layer,
                         KvPoolView pool, TensorView out) = 0;
  // logits = x @ wte^T                                     x: [R, E], logits: [R, V]
  virtual void lm_head(const TensorView& x, const TensorView& wte, TensorView logits) = 0;
  // Copies whole pages src[i] -> dst[i] inside the pool.
  virtual void copy_pages(KvPoolView pool, const std::vector<std::pair<int32_t, int32_t>>& moves) = 0;
};

}  // namespace kvmesh
