// Model: the GPT-2 forward of one pipeline stage, written once over Backend ops; tensor parallelism
// lives at the edges (masked embedding + all-reduce, row-parallel outputs + all-reduce, gathered LM head).
#include "worker/model.h"

#include <algorithm>

namespace kvmesh {
namespace {

TensorView view(const std::vector<float>& v, int64_t rows, int64_t cols) {
  return TensorView::of(const_cast<float*>(v.data()), {rows, cols});
}
TensorView view(float* data, int64_t rows, int64_t cols) { return TensorView::of(data, {rows, cols}); }
TensorView vec(const std::vector<float>& v) {
  return TensorView::of(const_cast<float*>(v.data()), {static_cast<int64_t>(v.size())});
}

}  // namespace

Model::Model(const ModelConfig& config, const ParallelLayout& layout, ModelWeights weights,
             std::unique_ptr<Backend> backend, Collectives* collectives)
    : config_(config),
      layout_(layout),
      w_(std::move(weights)),
      backend_(std::move(backend)),
      collectives_(collectives),
      el_(layout.heads(config).size() * config.head_dim()),
      il_(layout.inner(config).size()) {}

void Model::embed(const std::vector<int32_t>& tokens, const BatchLayout& batch, float* x) {
  const int64_t n = static_cast<int64_t>(tokens.size()), e = config_.n_embd;
  const int64_t vl = layout_.vocab(config_).size();
  // Every TP rank looks up its vocabulary rows; positions are added once (TP rank 0).
  const TensorView wpe = view(w_.wpe, config_.n_positions, e);
  backend_->embed(view(w_.wte, vl, e), layout_.vocab(config_).begin,
                  layout_.tp_rank() == 0 ? &wpe : nullptr, tokens.data(), batch.positions.data(),
                  view(x, n, e));
  if (layout_.tp > 1) collectives_->tp_all_reduce_sum(x, n * e);
}

void Model::run_layers(const BatchLayout& batch, KvPoolView pool, int64_t n, float* x) {
  const int64_t e = config_.n_embd;
  h_.resize(static_cast<size_t>(n * e));
  qkv_.resize(static_cast<size_t>(n * 3 * el_));
  attn_.resize(static_cast<size_t>(n * el_));
  mlp_.resize(static_cast<size_t>(n * il_));
  for (int layer = 0; layer < n_local_layers(); ++layer) {
    attention_block(layer, batch, pool, n, x);
    mlp_block(layer, n, x);
  }
}

// x += attn_out(attention(qkv(ln1(x)))), heads local, attn_out row-parallel.
void Model::attention_block(int layer, const BatchLayout& batch, KvPoolView pool, int64_t n, float* x) {
  const LayerWeights& w = w_.layers[layer];
  const int64_t e = config_.n_embd;
  Backend& b = *backend_;
  b.layer_norm(view(x, n, e), vec(w.ln1_w), vec(w.ln1_b), config_.layer_norm_epsilon, view(h_, n, e));
  const TensorView qkv_b = vec(w.qkv_b);
  b.linear(view(h_, n, e), view(w.qkv_w, e, 3 * el_), &qkv_b, view(qkv_, n, 3 * el_));
  b.kv_write(view(qkv_, n, 3 * el_), batch, layer, pool);
  b.attention(view(qkv_, n, 3 * el_), batch, layer, pool, view(attn_, n, el_));
  b.linear(view(attn_, n, el_), view(w.attn_out_w, el_, e), nullptr, view(h_, n, e));
  if (layout_.tp > 1) collectives_->tp_all_reduce_sum(h_.data(), n * e);
  b.add_bias(view(h_, n, e), vec(w.attn_out_b));
  b.add(view(x, n, e), view(h_, n, e));
}

// x += fc2(act(fc1(ln2(x)))), fc1 column-parallel, fc2 row-parallel.
void Model::mlp_block(int layer, int64_t n, float* x) {
  const LayerWeights& w = w_.layers[layer];
  const int64_t e = config_.n_embd;
  Backend& b = *backend_;
  b.layer_norm(view(x, n, e), vec(w.ln2_w), vec(w.ln2_b), config_.layer_norm_epsilon, view(h_, n, e));
  const TensorView fc1_b = vec(w.fc1_b);
  b.linear(view(h_, n, e), view(w.fc1_w, e, il_), &fc1_b, view(mlp_, n, il_));
  b.activation(view(mlp_, n, il_), config_.activation);
  b.linear(view(mlp_, n, il_), view(w.fc2_w, il_, e), nullptr, view(h_, n, e));
  if (layout_.tp > 1) collectives_->tp_all_reduce_sum(h_.data(), n * e);
  b.add_bias(view(h_, n, e), vec(w.fc2_b));
  b.add(view(x, n, e), view(h_, n, e));
}

void Model::logits(const float* x, const std::vector<int32_t>& rows, std::vector<float>* out) {
  const int64_t e = config_.n_embd, v = config_.vocab_size;
  const int64_t r = static_cast<int64_t>(rows.size());
  const int64_t vl = layout_.vocab(config_).size();
  rows_.resize(static_cast<size_t>(r * e));
  for (int64_t i = 0; i < r; ++i) std::copy_n(x + rows[i] * e, e, rows_.data() + i * e);
  backend_->layer_norm(view(rows_, r, e), vec(w_.lnf_w), vec(w_.lnf_b), config_.layer_norm_epsilon,
                       view(rows_, r, e));
  if (layout_.tp == 1) {
    out->resize(static_cast<size_t>(r * v));
    backend_->lm_head(view(rows_, r, e), view(w_.wte, v, e), view(out->data(), r, v));
    return;
  }
  local_.resize(static_cast<size_t>(r * vl));
  backend_->lm_head(view(rows_, r, e), view(w_.wte, vl, e), view(local_.data(), r, vl));
  const bool root = layout_.tp_rank() == 0;
  if (root) gathered_.resize(static_cast<size_t>(layout_.tp * r * vl));
  collectives_->tp_gather(local_.data(), r * vl, root ? gathered_.data() : nullptr);
  if (!root) return;
  // [tp, R, Vl] -> [R, V], dropping the padded rows past the real vocabulary.
  out->resize(static_cast<size_t>(r * v));
  for (int t = 0; t < layout_.tp; ++t) {
    const int64_t begin = t * vl, cols = std::min(vl, v - begin);
    if (cols <= 0) continue;
    for (int64_t i = 0; i < r; ++i)
      std::copy_n(gathered_.data() + (t * r + i) * vl, cols, out->data() + i * v + begin);
  }
}

}  // namespace kvmesh
