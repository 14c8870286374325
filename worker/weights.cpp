// Loading one rank's shard of weights by the names and layout the model description gives, by byte
// range, with shape checks that name the tensor and the checkpoint.
#include "worker/weights.h"

#include <algorithm>
#include <set>
#include <string>

#include "common/families/family.h"
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

// The name a checkpoint holds a tensor under: with the family's base prefix when it has that one,
// else as named (so a missing tensor's error names it as the description does).
std::string resolve(const WeightSource& ckpt, const TensorNaming& n, const std::string& name) {
  const std::string prefixed = n.base_prefix + name;
  return !n.base_prefix.empty() && ckpt.shape(prefixed).is_ok() ? prefixed : name;
}

// Input features `in` x output features `out` of a matrix of in_total x out_total, as [in, out]
// (Conv1D layout) whatever the family stores: an [out, in] (nn.Linear) matrix is read and transposed.
Status read_matrix(const WeightSource& ckpt, const TensorNaming& n, const std::string& name, int64_t in_total,
                   int64_t out_total, Range in, Range out, std::vector<float>* dst) {
  const std::string full = resolve(ckpt, n, name);
  if (!n.linear_layout) return read_block(ckpt, full, {in_total, out_total}, in, out, dst);
  std::vector<float> block;
  KVMESH_RETURN_IF_ERROR(read_block(ckpt, full, {out_total, in_total}, out, in, &block));
  dst->assign(block.size(), 0.0f);
  const int64_t rows = out.size(), cols = in.size();
  constexpr int64_t kTile = 64;  // transposed in tiles that stay in cache
  for (int64_t r0 = 0; r0 < rows; r0 += kTile)
    for (int64_t c0 = 0; c0 < cols; c0 += kTile)
      for (int64_t r = r0; r < std::min(rows, r0 + kTile); ++r)
        for (int64_t c = c0; c < std::min(cols, c0 + kTile); ++c) (*dst)[c * rows + r] = block[r * cols + c];
  return Status::ok();
}

// Elements `cols` of a vector of `total`.
Status read_vector(const WeightSource& ckpt, const TensorNaming& n, const std::string& name, int64_t total,
                   Range cols, std::vector<float>* dst) {
  return read_block(ckpt, resolve(ckpt, n, name), {total}, {0, 1}, cols, dst);
}

// qkv columns of the local heads: Q, K and V blocks side by side -> [E, 3 El] and [3 El], from one
// fused matrix or three; biases zero where the family has none.
Status read_qkv(const WeightSource& ckpt, const ModelConfig& c, int i, Range cols, LayerWeights* w) {
  const TensorNaming& n = family_of(c).names;
  const int64_t e = c.n_embd, el = cols.size();
  const bool fused = !n.qkv_w.empty();
  w->qkv_w.assign(static_cast<size_t>(e * 3 * el), 0.0f);
  w->qkv_b.assign(static_cast<size_t>(3 * el), 0.0f);
  const std::string* weights[3] = {&n.q_w, &n.k_w, &n.v_w};
  const std::string* biases[3] = {&n.q_b, &n.k_b, &n.v_b};
  std::vector<float> block, bias;
  for (int part = 0; part < 3; ++part) {
    const int64_t shift = fused ? part * e : 0;
    const Range c_part{shift + cols.begin, shift + cols.end};
    const int64_t out_total = fused ? 3 * e : e;
    KVMESH_RETURN_IF_ERROR(read_matrix(ckpt, n, n.layer(i, fused ? n.qkv_w : *weights[part]), e, out_total, {0, e},
                                       c_part, &block));
    for (int64_t r = 0; r < e; ++r)
      std::copy_n(block.data() + r * el, el, w->qkv_w.data() + r * 3 * el + part * el);
    if (!c.qkv_bias) continue;
    KVMESH_RETURN_IF_ERROR(read_vector(ckpt, n, n.layer(i, fused ? n.qkv_b : *biases[part]), out_total, c_part, &bias));
    std::copy_n(bias.data(), el, w->qkv_b.data() + part * el);
  }
  return Status::ok();
}

Status load_layer(const WeightSource& ckpt, const ModelConfig& c, const ParallelLayout& l, int i,
                  LayerWeights* w) {
  const TensorNaming& n = family_of(c).names;
  const int64_t e = c.n_embd, inner = c.n_inner, d = c.head_dim();
  const Range heads = l.heads(c);
  const Range cols{heads.begin * d, heads.end * d};
  const Range mlp = l.inner(c);
  const Range all{0, e};
  auto vec = [&](const std::string& leaf, int64_t total, Range r, std::vector<float>* dst) {
    return read_vector(ckpt, n, n.layer(i, leaf), total, r, dst);
  };
  KVMESH_RETURN_IF_ERROR(vec(n.ln1_w, e, all, &w->ln1_w));
  KVMESH_RETURN_IF_ERROR(vec(n.ln1_b, e, all, &w->ln1_b));
  KVMESH_RETURN_IF_ERROR(read_qkv(ckpt, c, i, cols, w));
  KVMESH_RETURN_IF_ERROR(read_matrix(ckpt, n, n.layer(i, n.out_w), e, e, cols, all, &w->attn_out_w));
  KVMESH_RETURN_IF_ERROR(vec(n.out_b, e, all, &w->attn_out_b));
  KVMESH_RETURN_IF_ERROR(vec(n.ln2_w, e, all, &w->ln2_w));
  KVMESH_RETURN_IF_ERROR(vec(n.ln2_b, e, all, &w->ln2_b));
  KVMESH_RETURN_IF_ERROR(read_matrix(ckpt, n, n.layer(i, n.fc1_w), e, inner, all, mlp, &w->fc1_w));
  KVMESH_RETURN_IF_ERROR(vec(n.fc1_b, inner, mlp, &w->fc1_b));
  KVMESH_RETURN_IF_ERROR(read_matrix(ckpt, n, n.layer(i, n.fc2_w), inner, e, mlp, all, &w->fc2_w));
  KVMESH_RETURN_IF_ERROR(vec(n.fc2_b, e, all, &w->fc2_b));
  return Status::ok();
}

// This rank's vocabulary rows of the token embedding (or of an untied head: `tensor`); rows past the
// real vocabulary (padding) stay zero.
Status load_vocab_rows(const WeightSource& ckpt, const ModelConfig& c, const ParallelLayout& l,
                       const std::string& tensor, std::vector<float>* wte) {
  const TensorNaming& n = family_of(c).names;
  const std::string name = resolve(ckpt, n, tensor);
  const int64_t e = c.n_embd;
  const Range rows = l.vocab(c);
  const Range real{rows.begin, std::min<int64_t>(rows.end, c.vocab_size)};
  wte->assign(static_cast<size_t>(rows.size() * e), 0.0f);
  if (real.size() <= 0) return check_shape(ckpt, name, {c.vocab_size, e});
  std::vector<float> block;
  KVMESH_RETURN_IF_ERROR(read_block(ckpt, name, {c.vocab_size, e}, real, {0, e}, &block));
  std::copy(block.begin(), block.end(), wte->begin());
  return Status::ok();
}

// The rows of positions 0 .. n_positions - 1: rows from position_offset on of the family's table.
Status load_positions(const WeightSource& ckpt, const ModelConfig& c, std::vector<float>* wpe) {
  const TensorNaming& n = family_of(c).names;
  const int64_t e = c.n_embd, off = c.position_offset;
  return read_block(ckpt, resolve(ckpt, n, n.pos_embed), {c.n_positions + off, e}, {off, c.n_positions + off},
                    {0, e}, wpe);
}

// Whether `name` (without the base prefix) is a tensor of the model config.json describes: its
// weights, the causal-mask buffers some files keep per layer, and a tied head's copy.
bool used_by_model(const std::string& name, const ModelConfig& c, const std::set<std::string>& tensors) {
  const TensorNaming& n = family_of(c).names;
  if (tensors.count(name) || name == n.head) return true;
  if (name.rfind(n.layer_prefix, 0) != 0) return false;
  const size_t at = n.layer_prefix.size();
  const size_t dot = name.find('.', at);
  if (dot == std::string::npos || dot == at || dot > at + 9) return false;
  for (size_t i = at; i < dot; ++i)
    if (name[i] < '0' || name[i] > '9') return false;
  const long layer = std::stol(name.substr(at, dot - at));
  const std::string leaf = name.substr(dot + 1);
  return layer < c.n_layer && std::find(n.ignored_leaves.begin(), n.ignored_leaves.end(), leaf) != n.ignored_leaves.end();
}

}  // namespace

Status check_no_unused_tensors(const WeightSource& ckpt, const ModelConfig& c) {
  const TensorNaming& n = family_of(c).names;
  std::set<std::string> tensors;
  for (const ModelTensor& t : model_tensors(c)) tensors.insert(strip_base_prefix(t.name, n));
  std::vector<std::string> unused;
  for (const std::string& raw : ckpt.tensor_names())
    if (!used_by_model(strip_base_prefix(raw, n), c, tensors)) unused.push_back(raw);
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
    KVMESH_RETURN_IF_ERROR(load_vocab_rows(ckpt, c, layout, family_of(c).names.tok_embed, &w.wte));
  if (layout.first_stage()) KVMESH_RETURN_IF_ERROR(load_positions(ckpt, c, &w.wpe));
  const Range layers = layout.layers(c);
  w.layers.resize(static_cast<size_t>(layers.size()));
  for (int64_t i = layers.begin; i < layers.end; ++i)
    KVMESH_RETURN_IF_ERROR(load_layer(ckpt, c, layout, static_cast<int>(i), &w.layers[i - layers.begin]));
  if (layout.last_stage()) {
    const TensorNaming& n = family_of(c).names;
    KVMESH_RETURN_IF_ERROR(read_vector(ckpt, n, n.final_norm_w, e, {0, e}, &w.lnf_w));
    KVMESH_RETURN_IF_ERROR(read_vector(ckpt, n, n.final_norm_b, e, {0, e}, &w.lnf_b));
    if (!c.tied_head) KVMESH_RETURN_IF_ERROR(load_vocab_rows(ckpt, c, layout, n.head, &w.head));
  }
  return w;
}

int64_t shard_weight_elems(const ModelConfig& c, const ParallelLayout& l) {
  const int64_t e = c.n_embd, el = l.heads(c).size() * c.head_dim(), il = l.inner(c).size();
  const int64_t per_layer = 4 * e + e * 3 * el + 3 * el + el * e + e + e * il + il + il * e + e;
  int64_t n = l.layers(c).size() * per_layer;
  if (l.first_stage() || l.last_stage()) n += l.vocab(c).size() * e;
  if (l.first_stage()) n += static_cast<int64_t>(c.n_positions) * e;
  if (l.last_stage()) n += 2 * e + (c.tied_head ? 0 : l.vocab(c).size() * e);
  return n;
}

}  // namespace kvmesh
