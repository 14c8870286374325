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

// A page pool. One page is one contiguous block of page_bytes():
//   data   [n_layers, 2, block_size, n_heads, head_dim] of dtype (K then V per layer)
//   scales [n_layers, 2, block_size, n_heads] fp32, only for i8 (absmax / 127 per token and head),
//          starting at the first 16-byte boundary after the data.
// The tiers (device, host, disk) copy pages whole, so a page never points outside itself.
struct KvPoolView {
  void* data = nullptr;  // [n_pages, page_bytes()]
  DType dtype = DType::f32;
  int32_t n_pages = 0;
  int32_t n_layers = 0;
  int32_t block_size = 0;
  int32_t n_heads = 0;
  int32_t head_dim = 0;

  int64_t page_elems() const {
    return static_cast<int64_t>(n_layers) * 2 * block_size * n_heads * head_dim;
  }
  // Byte offset of the i8 scales inside a page.
  int64_t scales_offset() const {
    return (page_elems() * static_cast<int64_t>(dtype_size(dtype)) + 15) / 16 * 16;
  }
  int64_t page_bytes() const {
    if (dtype != DType::i8) return page_elems() * static_cast<int64_t>(dtype_size(dtype));
    return scales_offset() + static_cast<int64_t>(n_layers) * 2 * block_size * n_heads * 4;
  }
  uint8_t* page_ptr(int32_t page) const {
    return static_cast<uint8_t*>(data) + static_cast<int64_t>(page) * page_bytes();
  }
  // Index of (layer, kv, offset) as a token row: K (kv = 0) or V (kv = 1) of one slot.
  int64_t row_index(int32_t layer, int kv, int32_t offset) const {
    return (static_cast<int64_t>(layer) * 2 + kv) * block_size + offset;
  }
  // First element of head 0 of one token row (n_heads * head_dim elements of dtype follow).
  uint8_t* row_ptr(int32_t page, int32_t layer, int kv, int32_t offset) const {
    const int64_t row_elems = static_cast<int64_t>(n_heads) * head_dim;
    return page_ptr(page) + row_index(layer, kv, offset) * row_elems *
                                static_cast<int64_t>(dtype_size(dtype));
  }
  // i8 only: the n_heads scales of one token row.
  float* scales_ptr(int32_t page, int32_t layer, int kv, int32_t offset) const {
    return reinterpret_cast<float*>(page_ptr(page) + scales_offset()) +
           row_index(layer, kv, offset) * n_heads;
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
