// Placing a rank's weights with the backend, tensor by tensor, with the shapes the model reads.
#include "worker/placed_weights.h"

namespace kvmesh {
namespace {

class Placer {
 public:
  Placer(Backend& backend, PlacedWeights* out)
      : backend_(backend), out_(out) {}
  Status matrix(std::vector<float>& host, int64_t rows, int64_t cols, TensorView* view) {
    return place(host, rows, cols, true, view);
  }
  Status vector(std::vector<float>& host, TensorView* view) {
    return place(host, 1, static_cast<int64_t>(host.size()), false, view);
  }

 private:
  Status place(std::vector<float>& host, int64_t rows, int64_t cols, bool is_matrix, TensorView* view) {
    auto placed = backend_.place_weight(host, rows, cols, is_matrix, &out_->storage);
    if (!placed.is_ok()) return placed.status();
    *view = *placed;
    std::vector<float>().swap(host);
    return Status::ok();
  }
  Backend& backend_;
  PlacedWeights* out_;
};

}  // namespace

Result<PlacedWeights> place_weights(Backend& backend, ModelWeights& w, const ModelConfig& c,
                                    const ParallelLayout& layout) {
  PlacedWeights out;
  Placer p(backend, &out);
  const int64_t e = c.n_embd;
  const int64_t el = layout.heads(c).size() * c.head_dim(), il = layout.inner(c).size();
  if (!w.wte.empty())
    KVMESH_RETURN_IF_ERROR(p.matrix(w.wte, static_cast<int64_t>(w.wte.size()) / e, e, &out.wte));
  if (!w.wpe.empty())
    KVMESH_RETURN_IF_ERROR(p.matrix(w.wpe, static_cast<int64_t>(w.wpe.size()) / e, e, &out.wpe));
  out.layers.resize(w.layers.size());
  for (size_t i = 0; i < w.layers.size(); ++i) {
    LayerWeights& l = w.layers[i];
    PlacedLayer& o = out.layers[i];
    KVMESH_RETURN_IF_ERROR(p.vector(l.ln1_w, &o.ln1_w));
    KVMESH_RETURN_IF_ERROR(p.vector(l.ln1_b, &o.ln1_b));
    KVMESH_RETURN_IF_ERROR(p.matrix(l.qkv_w, e, 3 * el, &o.qkv_w));
    KVMESH_RETURN_IF_ERROR(p.vector(l.qkv_b, &o.qkv_b));
    KVMESH_RETURN_IF_ERROR(p.matrix(l.attn_out_w, el, e, &o.attn_out_w));
    KVMESH_RETURN_IF_ERROR(p.vector(l.attn_out_b, &o.attn_out_b));
    KVMESH_RETURN_IF_ERROR(p.vector(l.ln2_w, &o.ln2_w));
    KVMESH_RETURN_IF_ERROR(p.vector(l.ln2_b, &o.ln2_b));
    KVMESH_RETURN_IF_ERROR(p.matrix(l.fc1_w, e, il, &o.fc1_w));
    KVMESH_RETURN_IF_ERROR(p.vector(l.fc1_b, &o.fc1_b));
    KVMESH_RETURN_IF_ERROR(p.matrix(l.fc2_w, il, e, &o.fc2_w));
    KVMESH_RETURN_IF_ERROR(p.vector(l.fc2_b, &o.fc2_b));
  }
  if (!w.lnf_w.empty()) {
    KVMESH_RETURN_IF_ERROR(p.vector(w.lnf_w, &out.lnf_w));
    KVMESH_RETURN_IF_ERROR(p.vector(w.lnf_b, &out.lnf_b));
  }
  out.head = out.wte;
  if (!w.head.empty())
    KVMESH_RETURN_IF_ERROR(p.matrix(w.head, static_cast<int64_t>(w.head.size()) / e, e, &out.head));
  return out;
}

}  // namespace kvmesh
