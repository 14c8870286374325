// Loading one rank's shard of GPT-2 weights by name and byte range, with shape checks that name the
// tensor and the checkpoint.
#include "worker/weights.h"

#include <algorithm>
#include <set>
#include <string>

#include "worker/weight_source.h"

namespace kvmesh {
namespace {

std::string dims_string(const std::vector<int64_t>& dims) {
  return shape_string(dims.data(), static_cast<int>(dims.size()));
}

Status check_shape(const WeightSource& ckpt, const std::string& name, const std::vector<int64_t>& dims) {
  auto shape = ckpt.shape(name);
  if (!shape.is_ok()) return shape.status();
  if (*shape != dims) {
    return invalid_argument(ckpt.describe() + ": tensor '" + name + "' has shape " +
                            dims_string(*shape) + " but the config implies " + dims_string(dims));
  }
  return Status::ok();
}

// Reads rows x cols of a tensor whose full shape must be `dims` (a 1-D tensor is one row).
Status read_block(const WeightSource& ckpt, const std::string& name, const std::vector<int64_t>& dims,
                  Range rows, Range cols, std::vector<float>* out) {
  KVMESH_RETURN_IF_ERROR(check_shape(ckpt, name, dims));
  out->assign(static_cast<size_t>(rows.size() * cols.size()), 0.0f);
  return ckpt.read_f32(name, rows.begin, rows.end, cols.begin, cols.end, out->data());
}

Status read_full(const WeightSource& ckpt, const std::string& name, const std::vector<int64_t>& dims,
                 std::vector<float>* out) {
  const Range rows{0, dims.size() == 2 ? dims[0] : 1};
  return read_block(ckpt, name, dims, rows, {0, dims.back()}, out);
}

// qkv columns of the local heads: Q, K and V blocks side by side -> [E, 3 El] and [3 El].
Status read_qkv(const WeightSource& ckpt, const std::string& p, int64_t e, Range cols, LayerWeights* w) {
  const int64_t el = cols.size();
  w->qkv_w.assign(static_cast<size_t>(e * 3 * el), 0.0f);
  w->qkv_b.assign(static_cast<size_t>(3 * el), 0.0f);
  std::vector<float> block, bias;
  for (int part = 0; part < 3; ++part) {
    const Range c{part * e + cols.begin, part * e + cols.end};
    KVMESH_RETURN_IF_ERROR(read_block(ckpt, p + "attn.c_attn.weight", {e, 3 * e}, {0, e}, c, &block));
    for (int64_t r = 0; r < e; ++r)
      std::copy_n(block.data() + r * el, el, w->qkv_w.data() + r * 3 * el + part * el);
    KVMESH_RETURN_IF_ERROR(read_block(ckpt, p + "attn.c_attn.bias", {3 * e}, {0, 1}, c, &bias));
    std::copy_n(bias.data(), el, w->qkv_b.data() + part * el);
  }
  return Status::ok();
}

Status load_layer(const WeightSource& ckpt, const ModelConfig& c, const ParallelLayout& l, int i,
                  LayerWeights* w) {
  const int64_t e = c.n_embd, inner = c.n_inner, d = c.head_dim();
  const Range heads = l.heads(c);
  const Range cols{heads.begin * d, heads.end * d};
  const Range mlp = l.inner(c);
  const std::string p = "h." + std::to_string(i) + ".";
  KVMESH_RETURN_IF_ERROR(read_full(ckpt, p + "ln_1.weight", {e}, &w->ln1_w));
  KVMESH_RETURN_IF_ERROR(read_full(ckpt, p + "ln_1.bias", {e}, &w->ln1_b));
  KVMESH_RETURN_IF_ERROR(read_qkv(ckpt, p, e, cols, w));
  KVMESH_RETURN_IF_ERROR(read_block(ckpt, p + "attn.c_proj.weight", {e, e}, cols, {0, e}, &w->attn_out_w));
  KVMESH_RETURN_IF_ERROR(read_full(ckpt, p + "attn.c_proj.bias", {e}, &w->attn_out_b));
  KVMESH_RETURN_IF_ERROR(read_full(ckpt, p + "ln_2.weight", {e}, &w->ln2_w));
  KVMESH_RETURN_IF_ERROR(read_full(ckpt, p + "ln_2.bias", {e}, &w->ln2_b));
  KVMESH_RETURN_IF_ERROR(read_block(ckpt, p + "mlp.c_fc.weight", {e, inner}, {0, e}, mlp, &w->fc1_w));
  KVMESH_RETURN_IF_ERROR(read_block(ckpt, p + "mlp.c_fc.bias", {inner}, {0, 1}, mlp, &w->fc1_b));
  KVMESH_RETURN_IF_ERROR(read_block(ckpt, p + "mlp.c_proj.weight", {inner, e}, mlp, {0, e}, &w->fc2_w));
  KVMESH_RETURN_IF_ERROR(read_full(ckpt, p + "mlp.c_proj.bias", {e}, &w->fc2_b));
  return Status::ok();
}

// This rank's vocabulary rows of wte; rows past the real vocabulary (padding) stay zero.
Status load_vocab_rows(const WeightSource& ckpt, const ModelConfig& c, const ParallelLayout& l,
                       std::vector<float>* wte) {
  const int64_t e = c.n_embd;
  const Range rows = l.vocab(c);
  const Range real{rows.begin, std::min<int64_t>(rows.end, c.vocab_size)};
  wte->assign(static_cast<size_t>(rows.size() * e), 0.0f);
  if (real.size() <= 0) return check_shape(ckpt, "wte.weight", {c.vocab_size, e});
  std::vector<float> block;
  KVMESH_RETURN_IF_ERROR(read_block(ckpt, "wte.weight", {c.vocab_size, e}, real, {0, e}, &block));
  std::copy(block.begin(), block.end(), wte->begin());
  return Status::ok();
}

// Whether `name` (without "transformer.") is a tensor of the model config.json describes: its
// weights, the causal-mask buffers older GPT-2 files keep per layer, and a tied head's copy.
bool used_by_model(const std::string& name, const ModelConfig& c) {
  static const std::set<std::string> kTop = {"wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias", "lm_head.weight"};
  static const std::set<std::string> kLayer = {
      "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight", "attn.c_proj.bias",
      "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias",
      "attn.bias", "attn.masked_bias"};
  if (kTop.count(name)) return true;
  if (name.rfind("h.", 0) != 0) return false;
  const size_t dot = name.find('.', 2);
  if (dot == std::string::npos || dot == 2 || dot > 11) return false;
  for (size_t i = 2; i < dot; ++i)
    if (name[i] < '0' || name[i] > '9') return false;
  const long layer = std::stol(name.substr(2, dot - 2));
  return layer < c.n_layer && kLayer.count(name.substr(dot + 1)) > 0;
}

}  // namespace

Status check_no_unused_tensors(const WeightSource& ckpt, const ModelConfig& c) {
  std::vector<std::string> unused;
  for (const std::string& raw : ckpt.tensor_names()) {
    const std::string name = raw.rfind("transformer.", 0) == 0 ? raw.substr(12) : raw;
    if (!used_by_model(name, c)) unused.push_back(raw);
  }
  if (unused.empty()) return Status::ok();
  std::sort(unused.begin(), unused.end());
  std::string shown;
  for (size_t i = 0; i < unused.size() && i < 4; ++i) shown += (i ? ", " : "") + unused[i];
  if (unused.size() > 4) shown += ", ...";
  return invalid_argument(ckpt.describe() + ": " + std::to_string(unused.size()) +
                          " tensors are not part of the model config.json describes (n_layer " +
                          std::to_string(c.n_layer) + "): " + shown +
                          "; is config.json the checkpoint's own?");
}

Result<ModelWeights> load_weights(const WeightSource& ckpt, const ModelConfig& c,
                                  const ParallelLayout& layout) {
  KVMESH_RETURN_IF_ERROR(check_no_unused_tensors(ckpt, c));
  ModelWeights w;
  const int64_t e = c.n_embd;
  if (layout.first_stage() || layout.last_stage())
    KVMESH_RETURN_IF_ERROR(load_vocab_rows(ckpt, c, layout, &w.wte));
  if (layout.first_stage())
    KVMESH_RETURN_IF_ERROR(read_full(ckpt, "wpe.weight", {c.n_positions, e}, &w.wpe));
  const Range layers = layout.layers(c);
  w.layers.resize(static_cast<size_t>(layers.size()));
  for (int64_t i = layers.begin; i < layers.end; ++i)
    KVMESH_RETURN_IF_ERROR(load_layer(ckpt, c, layout, static_cast<int>(i), &w.layers[i - layers.begin]));
  if (layout.last_stage()) {
    KVMESH_RETURN_IF_ERROR(read_full(ckpt, "ln_f.weight", {e}, &w.lnf_w));
    KVMESH_RETURN_IF_ERROR(read_full(ckpt, "ln_f.bias", {e}, &w.lnf_b));
  }
  return w;
}

int64_t shard_weight_elems(const ModelConfig& c, const ParallelLayout& l) {
  const int64_t e = c.n_embd, el = l.heads(c).size() * c.head_dim(), il = l.inner(c).size();
  const int64_t per_layer = 4 * e + e * 3 * el + 3 * el + el * e + e + e * il + il + il * e + e;
  int64_t n = l.layers(c).size() * per_layer;
  if (l.first_stage() || l.last_stage()) n += l.vocab(c).size() * e;
  if (l.first_stage()) n += static_cast<int64_t>(c.n_positions) * e;
  if (l.last_stage()) n += 2 * e;
  return n;
}

}  // namespace kvmesh
