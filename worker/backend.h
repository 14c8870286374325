// The ops a model forward needs, behind one interface so CPU and CUDA run the same model code.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/protocol.h"
#include "common/status.h"
#include "common/tensor.h"
#include "worker/buffer.h"
#include "worker/logit_edit.h"
#include "worker/page_memory.h"

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
  int32_t block_size = 0;             // tokens per page (a device backend copies the block tables)
  std::vector<SeqSpan> seqs;
  std::vector<int32_t> positions;     // [T]
  std::vector<int32_t> slots;         // [T] page * block_size + offset in page
  // A captured graph's shape (0: ops run eagerly at T rows). The ops run over padded_rows rows;
  // rows past T read and write no page. max_context bounds every row's context (it fixes how a
  // device backend splits attention, so one graph serves every step of its size).
  int32_t padded_rows = 0;
  int32_t max_context = 0;
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

// How a layer attends: scores are q.k * scale; with window > 0 a row at position i sees only the
// keys at positions j with i - window < j <= i (local attention), else every j <= i.
struct AttentionSpec {
  float scale = 0.0f;  // 0: 1/sqrt(head_dim)
  int32_t window = 0;

  float scale_for(int32_t head_dim) const {
    return scale != 0.0f ? scale : 1.0f / std::sqrt(static_cast<float>(head_dim));
  }
  // The first context position a row at `position` sees.
  int32_t first_key(int32_t position) const { return window > 0 && position >= window ? position - window + 1 : 0; }
};

// Per-row statistics of a logits matrix, for greedy sampling and log-probs.
struct RowStats {
  float max = 0.0f;
  int32_t argmax = 0;     // first index holding the max
  float log_sum_exp = 0;  // log(sum exp(logit)); a token's log-prob is logit - log_sum_exp
};

// One row's draw for sample_rows of the token at `position`, which is the random draw's counter:
// the edits (logit bias, penalties, banned tokens) applied to a copy of the row, then greedy when
// params.greedy(), else temperature, top-k, top-p and min-p. Log-probs are the raw row's.
struct RowDraw {
  SamplingParams params;  // temperature, top_k, top_p, min_p, seed and the penalties' factors
  int64_t position = 0;
  int32_t n_top = -1;     // log-probs wanted: -1 none, 0 the token's alone, up to kMaxTopLogprobs
  std::vector<LogitEdit> edits;  // logit_edits (worker/sampler.h): by ascending token, in [0, V)
};

// What sample_rows gives back for one row (host memory).
struct RowSample {
  int32_t token = -1;
  // When n_top >= 0: the token's log-prob (logit - log-sum-exp of the raw logits) and the top
  // n_top (id, log-prob), log-prob descending, ties by lower id.
  PositionLogprobs logprobs;
};

// Every op takes tensors in the backend's memory (alloc(), weights from place_weight()); host
// arrays (tokens, positions, BatchLayout, row lists) stay on the host. Ops may run asynchronously:
// download() and status() wait for what was issued before them; error_so_far() does not.
class Backend {
 public:
  virtual ~Backend() = default;

  // ---- Memory ----
  // "cpu" or "cuda:<device> <name>".
  virtual std::string describe() const = 0;
  // Whether backend memory is host memory (then a Buffer's bytes are host-addressable).
  virtual bool host_memory() const = 0;
  // Uninitialised memory for activations and scratch.
  virtual Result<Buffer> alloc(size_t bytes) = 0;
  // Host -> backend memory (the host source may be reused on return) and back (complete on return).
  virtual void upload(void* dst, const void* src, size_t bytes) = 0;
  virtual void download(void* dst, const void* src, size_t bytes) = 0;
  // A weight as the ops read it: [rows, cols] fp32 host values; `matrix` weights (linear, embedding,
  // LM head) may be stored narrower (bf16/f16 on CUDA, bf16 on CPU); vectors (biases, LayerNorm)
  // stay fp32. The placed weight owns its memory, which goes to storage; `host` may be freed.
  virtual Result<TensorView> place_weight(const std::vector<float>& host, int64_t rows, int64_t cols,
                                          bool matrix, std::vector<Buffer>* storage) = 0;
  // Where the KV tiers live and how pages move between them.
  virtual PageMemory& page_memory() = 0;
  // The first error an op met (device errors are sticky: later ops do nothing); ok on CPU. Waits
  // for the ops issued so far.
  virtual Status status() = 0;
  // The first error an op has met so far, without waiting for the device: the error of an op still
  // running shows at a later status(). For checks inside a step, which must not stall the device.
  virtual Status error_so_far() { return status(); }
  // The native stream collectives must order with (cudaStream_t on CUDA; null on CPU).
  virtual void* native_stream() { return nullptr; }
  // Called once before a batch's ops: a device backend stages the layout's slots and block tables
  // (attention and kv_write on `batch` use what was staged for it). CPU: nothing.
  virtual void prepare_batch(const BatchLayout& batch) { (void)batch; }

  // ---- Ops ----

  // out[t] = wte[tokens[t] - vocab_begin] (zero when outside this shard's rows)
  //          + wpe[positions[t]] (when wpe is given)     wte: [Vl, E], out: [T, E]
  virtual void embed(const TensorView& wte, int64_t vocab_begin, const TensorView* wpe,
                     const int32_t* tokens, const int32_t* positions, TensorView out) = 0;
  // out = LayerNorm(x) * w + b over the last dim          x, out: [T, E]
  // out is fp32, or matmul_input_dtype() when it only feeds matrix products.
  virtual void layer_norm(const TensorView& x, const TensorView& w, const TensorView& b, float eps,
                          TensorView out) = 0;
  // The dtype in which activations may reach linear, linear_act and lm_head (besides fp32): a
  // device backend that multiplies narrow operands takes them without a cast of its own.
  virtual DType matmul_input_dtype() const { return DType::f32; }
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
  // Causal attention of each token's Q (columns [0, E) of qkv) over its sequence's pages, as
  // spec says (scale, window).    out: [T, E]
  virtual void attention(const TensorView& qkv, const BatchLayout& batch, int32_t layer,
                         KvPoolView pool, TensorView out, const AttentionSpec& spec = {}) = 0;
  // kv_write, then attention: one op so a device backend can write each decode row's K and V from
  // within its attention kernel.
  virtual void kv_write_attention(const TensorView& qkv, const BatchLayout& batch, int32_t layer,
                                  KvPoolView pool, TensorView out, const AttentionSpec& spec = {}) {
    kv_write(qkv, batch, layer, pool);
    attention(qkv, batch, layer, pool, out, spec);
  }
  // logits = x @ wte^T                                     x: [R, E], logits: [R, V]
  virtual void lm_head(const TensorView& x, const TensorView& wte, TensorView logits) = 0;
  // out[i] = x[rows[i]]                                    x: [T, E], out: [R, E]
  virtual void gather_rows(const TensorView& x, const std::vector<int32_t>& rows, TensorView out) = 0;
  // out = act(x @ w + b): one op so a device backend can fuse the bias and the activation.
  virtual void linear_act(const TensorView& x, const TensorView& w, const TensorView& b,
                          Activation act, TensorView out) {
    linear(x, w, &b, out);
    activation(out, act);
  }
  // x += (y + b[col]), y is left as is or holds y + b        x, y: [T, E], b: [E]
  virtual void add_bias_residual(TensorView x, TensorView y, const TensorView& b) {
    add_bias(y, b);
    add(x, y);
  }
  // x += (y + b), then out = LayerNorm(x) * ln_w + ln_b: the residual that ends one block and the
  // LayerNorm that starts the next, as one op (out is neither x nor y).    x, y, out: [T, E]
  virtual void add_bias_residual_layer_norm(TensorView x, TensorView y, const TensorView& b,
                                            const TensorView& ln_w, const TensorView& ln_b, float eps,
                                            TensorView out) {
    add_bias_residual(x, y, b);
    layer_norm(x, ln_w, ln_b, eps, out);
  }
  // Max, argmax and log-sum-exp of each row of logits; stats is host memory.  logits: [R, V]
  virtual void row_stats(const TensorView& logits, RowStats* stats) = 0;
  // Per row of logits, the draw draws[i] and its log-probs; out is host memory.  logits: [R, V]
  // The results of host_sample_rows (below); a device backend samples where the logits are and
  // brings back only the results.
  virtual void sample_rows(const TensorView& logits, const std::vector<RowDraw>& draws, RowSample* out) = 0;
  // Copies whole pages src[i] -> dst[i] inside the pool.
  virtual void copy_pages(KvPoolView pool, const std::vector<std::pair<int32_t, int32_t>>& moves) = 0;
  // dst = src, bytes of backend memory, ordered with the ops.
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  // `rows` rows of `width` bytes from src (rows src_pitch bytes apart) to dst (dst_pitch apart).
  virtual void copy_2d(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
                       size_t rows) = 0;

  // ---- Captured graphs (CUDA graphs) ----
  // Ops issued between begin_capture(key) and end_capture() are recorded, not run; replay(key)
  // runs them again, reading whatever their inputs hold then (the same addresses: activations,
  // the pool, and what prepare_batch staged for a layout with padded_rows set). Nothing may be
  // uploaded while recording: prepare_batch comes before begin_capture. A failed capture leaves
  // the backend usable (its ops then run eagerly); backends that cannot capture say false.
  virtual bool can_capture() const { return false; }
  // Whether collectives on native_stream() are recorded with the ops (NCCL on CUDA); when not,
  // a model that needs collectives between its ops runs them eagerly.
  virtual bool captures_collectives() const { return false; }
  virtual Status begin_capture(int key) {
    (void)key;
    return unavailable("this backend cannot capture graphs");
  }
  virtual Status end_capture() { return unavailable("this backend cannot capture graphs"); }
  virtual Status replay(int key) {
    (void)key;
    return unavailable("this backend cannot capture graphs");
  }
};

}  // namespace kvmesh

namespace kvmesh {

// The host sampler (worker/sampler.h: sample_token, log_softmax, position_logprobs) over each row
// of logits in backend's memory (downloaded first when that is not host memory): what
// Backend::sample_rows gives, and the CPU backend's sample_rows.
void host_sample_rows(Backend& backend, const TensorView& logits, const std::vector<RowDraw>& draws,
                      RowSample* out);

// Makes *buffer hold at least `bytes` of the backend's memory (grows only; contents are lost
// when it grows).
inline Status reserve(Backend& backend, Buffer* buffer, size_t bytes) {
  if (!buffer->empty() && buffer->bytes() >= bytes) return Status::ok();
  *buffer = Buffer();
  auto grown = backend.alloc(bytes);
  if (!grown.is_ok()) return grown.status();
  *buffer = std::move(grown).value();
  return Status::ok();
}

}  // namespace kvmesh
