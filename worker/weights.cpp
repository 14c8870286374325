// Loading GPT-2 weights by name from a checkpoint, with shape checks that name the tensor and file.
#include "worker/weights.h"

#include "common/safetensors.h"

namespace kvmesh {
namespace {

std::string dims_string(const std::vector<int64_t>& dims) {
  return shape_string(dims.data(), static_cast<int>(dims.size()));
}

// Reads tensor `name` whose shape must equal `dims` into out (fp32).
Status read_tensor(const Checkpoint& ckpt, const std::string& name, std::vector<int64_t> dims,
                   std::vector<float>* out) {
  auto shape = ckpt.shape(name);
  if (!shape.is_ok()) return shape.status();
  if (*shape != dims) {
    return invalid_argument(ckpt.dir() + ": tensor '" + name + "' has shape " +
                            dims_string(*shape) + " but the config implies " + dims_string(dims));
  }
  int64_t rows = dims.size() == 2 ? dims[0] : 1;
  int64_t cols = dims.back();
  out->assign(static_cast<size_t>(rows * cols), 0.0f);
  return ckpt.read_f32(name, 0, rows, 0, cols, out->data());
}

Status load_layer(const Checkpoint& ckpt, const ModelConfig& c, int i, LayerWeights* w) {
  const int64_t e = c.n_embd, inner = c.n_inner;
  const std::string p = "h." + std::to_string(i) + ".";
  KVMESH_RETURN_IF_ERROR(read_tensor(ckpt, p + "ln_1.weight", {e}, &w->ln1_w));
  KVMESH_RETURN_IF_ERROR(read_tensor(ckpt, p + "ln_1.bias", {e}, &w->ln1_b));
  KVMESH_RETURN_IF_ERROR(read_tensor(ckpt, p + "attn.c_attn.weight", {e, 3 * e}, &w->qkv_w));
  KVMESH_RETURN_IF_ERROR(read_tensor(ckpt, p + "attn.c_attn.bias", {3 * e}, &w->qkv_b));
  KVMESH_RETURN_IF_ERROR(read_tensor(ckpt, p + "attn.c_proj.weight", {e, e}, &w->attn_out_w));
  KVMESH_RETURN_IF_ERROR(read_tensor(ckpt, p + "attn.c_proj.bias", {e}, &w->attn_out_b));
  KVMESH_RETURN_IF_ERROR(read_tensor(ckpt, p + "ln_2.weight", {e}, &w->ln2_w));
  KVMESH_RETURN_IF_ERROR(read_tensor(ckpt, p + "ln_2.bias", {e}, &w->ln2_b));
  KVMESH_RETURN_IF_ERROR(read_tensor(ckpt, p + "mlp.c_fc.weight", {e, inner}, &w->fc1_w));
  KVMESH_RETURN_IF_ERROR(read_tensor(ckpt, p + "mlp.c_fc.bias", {inner}, &w->fc1_b));
  KVMESH_RETURN_IF_ERROR(read_tensor(ckpt, p + "mlp.c_proj.weight", {inner, e}, &w->fc2_w));
  KVMESH_RETURN_IF_ERROR(read_tensor(ckpt, p + "mlp.c_proj.bias", {e}, &w->fc2_b));
  return Status::ok();
}

}  // namespace

Result<ModelWeights> load_weights(const Checkpoint& ckpt, const ModelConfig& c) {
  ModelWeights w;
  const int64_t e = c.n_embd;
  KVMESH_RETURN_IF_ERROR(read_tensor(ckpt, "wte.weight", {c.vocab_size, e}, &w.wte));
  KVMESH_RETURN_IF_ERROR(read_tensor(ckpt, "wpe.weight", {c.n_positions, e}, &w.wpe));
  w.layers.resize(static_cast<size_t>(c.n_layer));
  for (int i = 0; i < c.n_layer; ++i) KVMESH_RETURN_IF_ERROR(load_layer(ckpt, c, i, &w.layers[i]));
  KVMESH_RETURN_IF_ERROR(read_tensor(ckpt, "ln_f.weight", {e}, &w.lnf_w));
  KVMESH_RETURN_IF_ERROR(read_tensor(ckpt, "ln_f.bias", {e}, &w.lnf_b));
  return w;
}

}  // namespace kvmesh
