// Launchers of the CUDA backend's own kernels, one op per .cu file, each the twin of a CPU op
// (worker/cpu). Plain pointers in device memory and an explicit stream (KernelStream); every
// launcher returns the launch's cudaError_t. Compute is fp32; K/V pages and weights may be f16 or
// bf16. The structs staged from the host for them are in layout/kernel_args.h.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "worker/cuda/layout/kernel_args.h"
#include "worker/logit_edit.h"

namespace kvmesh {

enum class KernelDType : int { f32 = 0, f16 = 1, bf16 = 2 };

// The stream a kernel is queued on, and whether it may overlap the kernel before it there
// (programmatic dependent launch, sm_90 on: its blocks start while that kernel still runs, load
// their weights, and wait for it before anything else; launch_overlap_works says whether a device
// and this build run it). A cudaStream_t alone launches the plain way.
struct KernelStream {
  cudaStream_t stream = nullptr;
  bool overlap = false;
  KernelStream(cudaStream_t s = nullptr, bool overlap_previous = false) : stream(s), overlap(overlap_previous) {}
};

// Whether kernels launched with KernelStream::overlap run correctly on the current device: its
// compute capability is 9.0 or more, the kernels it runs were built for it (not compiled at start
// from older PTX, which lacks the wait), and such launches after a kernel and after a memset,
// eagerly and from a CUDA graph, keep their order. On false, *why says what failed. Uses and
// synchronises `stream`.
bool launch_overlap_works(cudaStream_t stream, const char** why);

// The page layout of KvPoolView: page p, layer l, kv, token offset o, head h, element c sits at
// element p * page_elems + ((l * 2 + kv) * block_size + o) * n_heads * head_dim + h * head_dim + c.
struct KvPoolGeometry {
  void* data = nullptr;
  KernelDType dtype = KernelDType::f32;
  int64_t page_elems = 0;
  int32_t block_size = 0;
  int32_t n_heads = 0;
  int32_t head_dim = 0;  // at most kMaxHeadDim
};
constexpr int kMaxHeadDim = 256;

// Where each query row of a ragged batch attends: row t sees context positions [0, row_ctx[t]),
// whose pages are tables[row_table[t] + j / block_size].
struct AttentionRows {
  const int32_t* row_ctx = nullptr;    // [T]
  const int32_t* row_table = nullptr;  // [T]
  const int32_t* tables = nullptr;     // concatenated block tables
  const int32_t* listed = nullptr;     // when set, only these rows (the others are done elsewhere)
  // When set ([T], one row per sequence), each row's own K and V (its last context position) are
  // taken from qkv and written to slot write_slots[t] first, as launch_kv_write would (a negative
  // slot: a padded row, nothing written).
  const int32_t* write_slots = nullptr;
};


// out[t] = wte[tokens[t] - vocab_begin] (0 outside [0, wte_rows)) + wpe[positions[t]] (wpe may be
// null).  out: [n, e] fp32
cudaError_t launch_embed(const void* wte, KernelDType wte_dtype, int64_t wte_rows, int64_t vocab_begin,
                         const void* wpe, KernelDType wpe_dtype, const int32_t* tokens,
                         const int32_t* positions, int64_t n, int64_t e, float* out,
                         KernelStream stream);

// out = (x - mean) / sqrt(var + eps) * w + b per row, stored in out_dtype (fp32, or the bf16/f16
// operand of a matrix product); out may be x when fp32.   x: [n, e] fp32, out: [n, e]
cudaError_t launch_layer_norm(const float* x, const float* w, const float* b, float eps, int64_t n,
                              int64_t e, void* out, KernelDType out_dtype, KernelStream stream);
// x += (y + bias[col]) (bias may be null), then out = LayerNorm(x) as above; out is neither x nor y.
cudaError_t launch_residual_layer_norm(float* x, const float* y, const float* bias, const float* w,
                                       const float* b, float eps, int64_t n, int64_t e, void* out,
                                       KernelDType out_dtype, KernelStream stream);

// Activations as in common/config.h's Activation (gelu_new = 0, gelu = 1, gelu_fast = 2, relu = 3);
// kNoActivation leaves values as they are.
constexpr int kNoActivation = -1;
// x = act(x + bias[col]) (bias may be null).    x: [n, e]
cudaError_t launch_bias_act(float* x, const float* bias, int act, int64_t n, int64_t e,
                            KernelStream stream);
// out = act(x + bias[col]) stored in out_dtype (fp32, or a matrix product's bf16/f16 operand; then
// out is not x).     x: [n, e] fp32
cudaError_t launch_bias_act_into(const float* x, const float* bias, int act, int64_t n, int64_t e, void* out,
                                 KernelDType out_dtype, KernelStream stream);

// out = act(x @ w + bias[col]) (bias may be null, act kNoActivation) for a product of at most
// kFewRowsMax rows, stored in out_dtype (fp32, or the next product's f16/bf16 operand). x and w in
// dtype; w is [k, n] row-major (Conv1D layout), 16-byte aligned, n a multiple of 8
// (few_rows_product_serves). partial: few_rows_partial_floats(m, k, n) floats of device scratch
// (none when 0); arrivals: the zeroed counters launch_paged_attention uses (zero again after).
// A row's result is the same for any m.    x: [m, k], out: [m, n]
constexpr int kFewRowsMax = 8;
bool few_rows_product_serves(int64_t m, int64_t k, int64_t n, KernelDType dtype, const void* w);
int64_t few_rows_partial_floats(int64_t m, int64_t k, int64_t n);
cudaError_t launch_few_rows_product(const void* x, const void* w, KernelDType dtype, int64_t m, int64_t k, int64_t n,
                                    const float* bias, int act, void* out, KernelDType out_dtype, float* partial,
                                    int32_t* arrivals, KernelStream stream);

// logits = x @ wte^T for at most kFewRowsMax rows; x and wte in dtype, both 16-byte aligned, e a
// multiple of 8 from 256 to 2048 (few_rows_lm_head_serves). A row's logits are the same for any m.
// x: [m, e], wte: [v, e], logits: [m, v] fp32
bool few_rows_lm_head_serves(int64_t m, int64_t v, int64_t e, KernelDType dtype, const void* x, const void* wte);
cudaError_t launch_few_rows_lm_head(const void* x, const void* wte, KernelDType dtype, int64_t m, int64_t v, int64_t e,
                                    float* logits, KernelStream stream);

// x += (y + bias[col]) (bias may be null).      x, y: [n, e]
cudaError_t launch_bias_residual(float* x, const float* y, const float* bias, int64_t n, int64_t e,
                                 KernelStream stream);

// K and V of each token (columns [E, 2E) and [2E, 3E) of qkv, E = n_heads * head_dim) into its
// slot (page * block_size + offset) of `layer`; a row whose slot is negative (padding) writes
// nothing.    qkv: [n, 3E]
cudaError_t launch_kv_write(const float* qkv, const int32_t* slots, int64_t n, int32_t layer,
                            const KvPoolGeometry& pool, KernelStream stream);

// Causal attention of each row's Q (columns [0, E) of qkv) over its context in the pages, scores
// scaled by `scale`; with window > 0 a row sees only its last `window` positions (itself included).
// Each (row, head) is split over n_splits equal shares of that row's own (windowed) context; with n_splits > 1, partial ([T, n_heads, n_splits, head_dim + 2] floats) holds each
// share's (max, sum, unnormalised output) and the last share of a (row, head) to finish combines
// them, counting in arrivals ([n, n_heads] int32, zero before and zero again after; one launch at
// a time may use them: kMaxSplitPairs of them are the most a launch needs). A row with no context
// (row_ctx 0: a graph's padded row) reads no page and gets zeros. n counts the rows done: all T,
// or the listed ones. out is stored in out_dtype (fp32, or the bf16/f16 operand of the next matrix
// product).    out: [T, E]
cudaError_t launch_paged_attention(const float* qkv, const AttentionRows& rows, int64_t n,
                                   int32_t layer, const KvPoolGeometry& pool, float scale, int32_t window,
                                   int32_t n_splits,
                                   float* partial, int32_t* arrivals, void* out, KernelDType out_dtype,
                                   KernelStream stream);
// (row, head) pairs a split attention launch may have at most (n * n_heads), so one zeroed array
// of arrivals serves every launch.
constexpr int64_t kMaxSplitPairs = 1024;

// The same attention (scale, window) for the query rows of prefill tiles, K/V read once per tile
// (head_dim 64 only: prefill_attention_serves).    out: [T, E]
bool prefill_attention_serves(const KvPoolGeometry& pool);
cudaError_t launch_prefill_attention(const float* qkv, const PrefillTile* tiles, int64_t n_tiles,
                                     const int32_t* tables, int32_t layer, const KvPoolGeometry& pool,
                                     float scale, int32_t window, void* out, KernelDType out_dtype,
                                     KernelStream stream);

// out[i] = x[rows[i]]     x: [*, e], out: [r, e]
cudaError_t launch_gather_rows(const float* x, const int32_t* rows, int64_t r, int64_t e, float* out,
                               KernelStream stream);

// Per row of logits [r, v]: max, first argmax, log(sum(exp(logit))).
cudaError_t launch_row_stats(const float* logits, int64_t r, int64_t v, float* max, int32_t* argmax,
                             float* log_sum_exp, KernelStream stream);

// Device scratch of launch_sample_rows: double buffers of sort keys and ids, [n_sorted, v] each
// (a key: the row's sort slot in the high 32 bits, its logit's descending order in the low 32),
// and the sort's temporary storage.
struct SampleScratch {
  uint64_t* keys[2] = {nullptr, nullptr};
  int32_t* ids[2] = {nullptr, nullptr};
  void* temp = nullptr;
  size_t temp_bytes = 0;
};

// Bytes of sort temporary storage launch_sample_rows needs for up to n_sorted sorted rows of v
// (n_sorted * v < 2^31).
cudaError_t sample_rows_temp_bytes(int64_t n_sorted, int64_t v, size_t* bytes);

// Per row of logits [r, v], the draw draws[i] (device memory): the n_sorted rows with a sort slot
// are copied, their logit edits applied to the copy (edited_logit in worker/sampler.cpp), and
// sorted by (logit descending, id ascending), all of them in one device-wide radix sort; then one
// block per row takes the greedy token, or top-k, temperature, min-p, top-p and the counter-based
// draw as sample_token does, and the log-probs of the raw logits as log_softmax and
// position_logprobs do, into out[i] (device memory). With n_sorted 0 no row is sorted and scratch
// is not used; edits (device memory) may be null when no draw has any.
cudaError_t launch_sample_rows(const float* logits, int64_t r, int64_t v, const SampleDraw* draws,
                               const LogitEdit* edits, int64_t n_sorted, const SampleScratch& scratch,
                               SampleOut* out, cudaStream_t stream);

// dst = src rounded to nearest even in dtype (f16 or bf16), n elements.
cudaError_t launch_cast(const float* src, void* dst, KernelDType dtype, int64_t n, KernelStream stream);

}  // namespace kvmesh
