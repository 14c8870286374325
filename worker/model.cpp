// Model: the decoder forward of one pipeline stage (as the model description says), written once over Backend ops; tensor parallelism
// lives at the edges (masked embedding + all-reduce, row-parallel outputs + all-reduce, gathered LM head).
#include "worker/model.h"

#include <algorithm>
#include <utility>

namespace kvmesh {
namespace {

TensorView view(const Buffer& b, int64_t rows, int64_t cols) { return TensorView::of(b.f32(), {rows, cols}); }
TensorView view(float* data, int64_t rows, int64_t cols) { return TensorView::of(data, {rows, cols}); }

size_t floats(int64_t n) { return static_cast<size_t>(n) * sizeof(float); }

}  // namespace

Model::Model(const ModelConfig& config, const ParallelLayout& layout,
             std::unique_ptr<Backend> backend, Collectives* collectives)
    : config_(config),
      layout_(layout),
      backend_(std::move(backend)),
      collectives_(collectives),
      el_(layout.heads(config).size() * config.head_dim()),
      il_(layout.inner(config).size()),
      operand_dtype_(backend_->matmul_input_dtype()) {}

Result<std::unique_ptr<Model>> Model::create(const ModelConfig& config, const ParallelLayout& layout,
                                             ModelWeights weights, std::unique_ptr<Backend> backend,
                                             Collectives* collectives) {
  auto model = std::unique_ptr<Model>(new Model(config, layout, std::move(backend), collectives));
  KVMESH_ASSIGN_OR_RETURN(model->w_, place_weights(*model->backend_, weights, config, layout));
  KVMESH_RETURN_IF_ERROR(model->backend_->status());
  return model;
}

Status Model::embed(const std::vector<int32_t>& tokens, const BatchLayout& batch, float* x) {
  const int64_t n = static_cast<int64_t>(tokens.size()), e = config_.n_embd;
  // Every TP rank looks up its vocabulary rows; positions are added once (TP rank 0).
  backend_->embed(w_.wte, layout_.vocab(config_).begin, layout_.tp_rank() == 0 ? &w_.wpe : nullptr,
                  tokens.data(), batch.positions.data(), view(x, n, e));
  if (layout_.tp > 1) collectives_->tp_all_reduce_sum(x, n * e);
  return Status::ok();
}

Status Model::use_decode_graphs(bool on) {
  graphs_.reset();
  Backend& b = *backend_;
  if (!on || !b.can_capture() || (layout_.tp > 1 && !b.captures_collectives())) return Status::ok();
  DecodeGraphs::AgreeFn agree;
  if (layout_.tp > 1) agree = [this](bool recorded_here) { return collectives_->tp_all_true(recorded_here); };
  auto graphs = std::make_unique<DecodeGraphs>(
      b, LayerWidths{config_.n_embd, 3 * el_, el_, il_, config_.n_embd}, config_.n_positions, std::move(agree));
  const Status allocated = graphs->allocate();
  if (!allocated.is_ok()) return allocated.with_context("decode graph buffers");
  graphs_ = std::move(graphs);
  return Status::ok();
}

Status Model::run_layers(const BatchLayout& batch, KvPoolView pool, int64_t n, float* x) {
  if (graphs_ && graphs_->covers(batch) && n == static_cast<int64_t>(batch.positions.size()))
    return graphs_->run(batch, pool, x,
                        [this](const BatchLayout& b, KvPoolView p, int64_t rows, float* gx, const LayerScratch& s) {
                          layers(b, p, rows, gx, s);
                        });
  const int64_t e = config_.n_embd;
  Backend& b = *backend_;
  KVMESH_RETURN_IF_ERROR(reserve(b, &h_, floats(n * e)));
  KVMESH_RETURN_IF_ERROR(reserve(b, &qkv_, floats(n * 3 * el_)));
  KVMESH_RETURN_IF_ERROR(reserve(b, &attn_, floats(n * el_)));
  KVMESH_RETURN_IF_ERROR(reserve(b, &mlp_, floats(n * il_)));
  KVMESH_RETURN_IF_ERROR(reserve(b, &ln_, floats(n * e)));
  b.prepare_batch(batch);
  layers(batch, pool, n, x, {h_.f32(), qkv_.f32(), attn_.f32(), mlp_.f32(), ln_.f32()});
  return Status::ok();
}

// The LayerNorm that starts a block is fused with the residual that ends the one before, so the
// stage's first LayerNorm runs alone and the last residual without a LayerNorm after it.
void Model::layers(const BatchLayout& batch, KvPoolView pool, int64_t n, float* x, const LayerScratch& s) {
  if (n_local_layers() == 0) return;
  const int64_t e = config_.n_embd;
  const PlacedLayer& first = w_.layers[0];
  backend_->layer_norm(view(x, n, e), first.ln1_w, first.ln1_b, config_.layer_norm_epsilon,
                       operand_view(s.ln, n, e));
  for (int layer = 0; layer < n_local_layers(); ++layer) {
    attention_block(layer, batch, pool, n, x, s);
    mlp_block(layer, n, x, s);
  }
}

TensorView Model::operand_view(float* data, int64_t rows, int64_t cols) const {
  TensorView t = view(data, rows, cols);
  t.dtype = operand_dtype_;
  return t;
}

// x += attn_out(attention(qkv(ln1(x)))), heads local, attn_out row-parallel; s.ln holds ln1(x)
// on entry and ln2(x) on return.
void Model::attention_block(int layer, const BatchLayout& batch, KvPoolView pool, int64_t n, float* x,
                            const LayerScratch& s) {
  const PlacedLayer& w = w_.layers[layer];
  const int64_t e = config_.n_embd;
  Backend& b = *backend_;
  b.linear(operand_view(s.ln, n, e), w.qkv_w, &w.qkv_b, view(s.qkv, n, 3 * el_));
  const AttentionSpec spec{config_.attention_scale(),
                           config_.window(static_cast<int>(layout_.layers(config_).begin) + layer)};
  b.kv_write_attention(view(s.qkv, n, 3 * el_), batch, layer, pool, operand_view(s.attn, n, el_), spec);
  b.linear(operand_view(s.attn, n, el_), w.attn_out_w, nullptr, view(s.h, n, e));
  if (layout_.tp > 1) collectives_->tp_all_reduce_sum(s.h, n * e);
  b.add_bias_residual_layer_norm(view(x, n, e), view(s.h, n, e), w.attn_out_b, w.ln2_w, w.ln2_b,
                                 config_.layer_norm_epsilon, operand_view(s.ln, n, e));
}

// x += fc2(act(fc1(ln2(x)))), fc1 column-parallel, fc2 row-parallel; s.ln holds ln2(x) on entry
// and the next layer's ln1(x) on return (nothing after the stage's last layer).
void Model::mlp_block(int layer, int64_t n, float* x, const LayerScratch& s) {
  const PlacedLayer& w = w_.layers[layer];
  const int64_t e = config_.n_embd;
  Backend& b = *backend_;
  b.linear_act(operand_view(s.ln, n, e), w.fc1_w, w.fc1_b, config_.activation, operand_view(s.mlp, n, il_));
  b.linear(operand_view(s.mlp, n, il_), w.fc2_w, nullptr, view(s.h, n, e));
  if (layout_.tp > 1) collectives_->tp_all_reduce_sum(s.h, n * e);
  if (layer + 1 < n_local_layers()) {
    const PlacedLayer& next = w_.layers[layer + 1];
    b.add_bias_residual_layer_norm(view(x, n, e), view(s.h, n, e), w.fc2_b, next.ln1_w, next.ln1_b,
                                   config_.layer_norm_epsilon, operand_view(s.ln, n, e));
  } else {
    b.add_bias_residual(view(x, n, e), view(s.h, n, e), w.fc2_b);
  }
}

Status Model::head(const float* x, const std::vector<int32_t>& rows) {
  const int64_t e = config_.n_embd;
  const int64_t r = static_cast<int64_t>(rows.size());
  const int64_t vl = layout_.vocab(config_).size();
  Backend& b = *backend_;
  KVMESH_RETURN_IF_ERROR(reserve(b, &rows_ln_, floats(r * e)));
  KVMESH_RETURN_IF_ERROR(reserve(b, &local_, floats(r * vl)));
  // A decode batch whose rows all sample, in order, needs no gather: the LayerNorm reads x itself.
  bool in_order = true;
  for (int64_t i = 0; i < r && in_order; ++i) in_order = rows[static_cast<size_t>(i)] == i;
  const float* head_rows = x;
  if (!in_order) {
    KVMESH_RETURN_IF_ERROR(reserve(b, &rows_, floats(r * e)));
    const int64_t n_x = *std::max_element(rows.begin(), rows.end()) + 1;
    b.gather_rows(view(const_cast<float*>(x), n_x, e), rows, view(rows_, r, e));
    head_rows = rows_.f32();
  }
  b.layer_norm(view(const_cast<float*>(head_rows), r, e), w_.lnf_w, w_.lnf_b, config_.layer_norm_epsilon,
               operand_view(rows_ln_.f32(), r, e));
  b.lm_head(operand_view(rows_ln_.f32(), r, e), w_.head, view(local_, r, vl));
  return Status::ok();
}

Status Model::head_outputs(const float* x, HeadWork* work) {
  KVMESH_RETURN_IF_ERROR(head(x, work->rows));
  const float* logits = local_.f32();  // [R, V] (vl == v with one TP rank)
  if (layout_.tp > 1) {
    KVMESH_RETURN_IF_ERROR(gather_logits(static_cast<int64_t>(work->rows.size())));
    if (layout_.tp_rank() != 0) return backend_->error_so_far();
    logits = full_.f32();
  }
  const int64_t v = config_.vocab_size;
  const int64_t n_greedy = work->n_greedy, n_sampled = static_cast<int64_t>(work->draws.size());
  const int64_t n_host = work->n_host_rows();
  KVMESH_CHECK(n_greedy >= 0 && n_host >= 0);
  Backend& b = *backend_;
  float* rows = const_cast<float*>(logits);
  work->greedy.resize(static_cast<size_t>(n_greedy));
  work->samples.resize(static_cast<size_t>(n_sampled));
  work->logits.resize(static_cast<size_t>(n_host * v));
  if (n_greedy > 0) b.row_stats(view(rows, n_greedy, v), work->greedy.data());
  if (n_sampled > 0) b.sample_rows(view(rows + n_greedy * v, n_sampled, v), work->draws, work->samples.data());
  if (n_host > 0) b.download(work->logits.data(), rows + (n_greedy + n_sampled) * v, floats(n_host * v));
  return b.error_so_far();  // the worker's status() after the step waits for the rest
}

Status Model::gather_logits(int64_t r) {
  const int64_t v = config_.vocab_size;
  const int64_t vl = layout_.vocab(config_).size();
  Backend& b = *backend_;
  const bool root = layout_.tp_rank() == 0;
  if (root) {
    KVMESH_RETURN_IF_ERROR(reserve(b, &gathered_, floats(layout_.tp * r * vl)));
    KVMESH_RETURN_IF_ERROR(reserve(b, &full_, floats(r * v)));
  }
  collectives_->tp_gather(local_.f32(), r * vl, root ? gathered_.f32() : nullptr);
  if (!root) return Status::ok();
  // [tp, R, Vl] -> [R, V], dropping the padded columns past the real vocabulary.
  for (int t = 0; t < layout_.tp; ++t) {
    const int64_t begin = t * vl, cols = std::min(vl, v - begin);
    if (cols <= 0) continue;
    b.copy_2d(full_.f32() + begin, floats(v), gathered_.f32() + t * r * vl, floats(vl), floats(cols),
              static_cast<size_t>(r));
  }
  return Status::ok();
}

}  // namespace kvmesh
