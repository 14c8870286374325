// Model: the GPT-2 forward over a ragged batch and the paged KV cache, written once over Backend ops.
#include "worker/model.h"

#include <algorithm>

namespace kvmesh {
namespace {

TensorView view(std::vector<float>& v, int64_t rows, int64_t cols) {
  return TensorView::of(v.data(), {rows, cols});
}
TensorView view(const std::vector<float>& v, int64_t rows, int64_t cols) {
  return TensorView::of(const_cast<float*>(v.data()), {rows, cols});
}
TensorView vec(const std::vector<float>& v) {
  return TensorView::of(const_cast<float*>(v.data()), {static_cast<int64_t>(v.size())});
}

}  // namespace

Model::Model(const ModelConfig& config, ModelWeights weights, std::unique_ptr<Backend> backend)
    : config_(config), w_(std::move(weights)), backend_(std::move(backend)) {}

void Model::forward(const std::vector<int32_t>& tokens, const BatchLayout& batch,
                    const std::vector<int32_t>& logit_rows, KvPoolView pool,
                    std::vector<float>* logits) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t e = config_.n_embd, inner = config_.n_inner, v = config_.vocab_size;
  x_.resize(static_cast<size_t>(n * e));
  h_.resize(static_cast<size_t>(n * e));
  qkv_.resize(static_cast<size_t>(n * 3 * e));
  attn_.resize(static_cast<size_t>(n * e));
  mlp_.resize(static_cast<size_t>(n * inner));

  backend_->embed(view(w_.wte, v, e), view(w_.wpe, config_.n_positions, e), tokens.data(),
                  batch.positions.data(), view(x_, n, e));
  for (int layer = 0; layer < config_.n_layer; ++layer) layer_forward(layer, batch, pool, n);

  const int64_t r = static_cast<int64_t>(logit_rows.size());
  rows_.resize(static_cast<size_t>(r * e));
  for (int64_t i = 0; i < r; ++i)
    std::copy_n(x_.data() + logit_rows[i] * e, e, rows_.data() + i * e);
  backend_->layer_norm(view(rows_, r, e), vec(w_.lnf_w), vec(w_.lnf_b),
                       config_.layer_norm_epsilon, view(rows_, r, e));
  logits->resize(static_cast<size_t>(r * v));
  backend_->lm_head(view(rows_, r, e), view(w_.wte, v, e), view(*logits, r, v));
}

void Model::layer_forward(int layer, const BatchLayout& batch, KvPoolView pool, int64_t n) {
  const LayerWeights& w = w_.layers[layer];
  const int64_t e = config_.n_embd, inner = config_.n_inner;
  const float eps = config_.layer_norm_epsilon;
  Backend& b = *backend_;

  // Attention block: x += attn_out(attention(qkv(ln1(x))))
  b.layer_norm(view(x_, n, e), vec(w.ln1_w), vec(w.ln1_b), eps, view(h_, n, e));
  const TensorView qkv_b = vec(w.qkv_b);
  b.linear(view(h_, n, e), view(w.qkv_w, e, 3 * e), &qkv_b, view(qkv_, n, 3 * e));
  b.kv_write(view(qkv_, n, 3 * e), batch, layer, pool);
  b.attention(view(qkv_, n, 3 * e), batch, layer, pool, view(attn_, n, e));
  const TensorView out_b = vec(w.attn_out_b);
  b.linear(view(attn_, n, e), view(w.attn_out_w, e, e), &out_b, view(h_, n, e));
  b.add(view(x_, n, e), view(h_, n, e));

  // MLP block: x += fc2(act(fc1(ln2(x))))
  b.layer_norm(view(x_, n, e), vec(w.ln2_w), vec(w.ln2_b), eps, view(h_, n, e));
  const TensorView fc1_b = vec(w.fc1_b);
  b.linear(view(h_, n, e), view(w.fc1_w, e, inner), &fc1_b, view(mlp_, n, inner));
  b.activation(view(mlp_, n, inner), config_.activation);
  const TensorView fc2_b = vec(w.fc2_b);
  b.linear(view(mlp_, n, inner), view(w.fc2_w, inner, e), &fc2_b, view(h_, n, e));
  b.add(view(x_, n, e), view(h_, n, e));
}

}  // namespace kvmesh
