// WeightSource implementations: checkpoint byte ranges, and synthetic weights computed per element.
#include "worker/weight_source.h"

#include <cmath>
#include <map>

#include "common/families/family.h"
#include "common/hashing.h"
#include "common/safetensors.h"
#include "common/synthetic_models.h"

namespace kvmesh {
namespace {

class CheckpointSource final : public WeightSource {
 public:
  explicit CheckpointSource(std::unique_ptr<Checkpoint> ckpt) : ckpt_(std::move(ckpt)) {}
  Result<std::vector<int64_t>> shape(const std::string& name) const override { return ckpt_->shape(name); }
  Status read_f32(const std::string& name, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                  float* dst) const override {
    return ckpt_->read_f32(name, r0, r1, c0, c1, dst);
  }
  std::vector<std::string> tensor_names() const override { return ckpt_->tensor_names(); }
  std::string describe() const override { return ckpt_->dir(); }
  uint64_t bytes_read() const override { return ckpt_->bytes_read(); }

 private:
  std::unique_ptr<Checkpoint> ckpt_;
};

class SyntheticSource final : public WeightSource {
 public:
  SyntheticSource(const ModelConfig& c, uint64_t seed) : config_(c), seed_(seed) {
    for (ModelTensor& t : model_tensors(c)) shapes_[strip(t.name)] = std::move(t.shape);
  }

  Result<std::vector<int64_t>> shape(const std::string& raw) const override {
    auto it = shapes_.find(strip(raw));
    if (it != shapes_.end()) return it->second;
    return not_found(config_.name + ": no tensor '" + raw + "'");
  }

  Status read_f32(const std::string& raw, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                  float* dst) const override {
    KVMESH_ASSIGN_OR_RETURN(auto dims, shape(raw));
    const std::string name = strip(raw);
    const int64_t cols = dims.back();
    const uint64_t key = splitmix64(seed_ ^ fnv1a64(name.data(), name.size()));
    const bool is_ln = is_norm(name);
    const bool is_weight = name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
    const float mean = is_ln && is_weight ? 1.0f : 0.0f;
    const float std = is_ln ? 0.05f : (is_weight ? 0.02f : 0.01f);
    // Each element is a function of its index alone, so rows are filled in parallel.
    const int64_t width = c1 - c0;
#pragma omp parallel for schedule(static) if ((r1 - r0) * width > (1 << 16))
    for (int64_t r = r0; r < r1; ++r) {
      float* out = dst + (r - r0) * width;
      for (int64_t c = c0; c < c1; ++c) *out++ = mean + std * normal(key, static_cast<uint64_t>(r * cols + c));
    }
    return Status::ok();
  }
  std::string describe() const override { return config_.name; }
  uint64_t bytes_read() const override { return 0; }

 private:
  std::string strip(const std::string& name) const { return strip_base_prefix(name, family_of(config_).names); }
  // A LayerNorm's weight or bias (drawn around 1 and 0 rather than as a matrix).
  bool is_norm(const std::string& name) const {
    const TensorNaming& n = family_of(config_).names;
    auto ends_with = [&](const std::string& leaf) {
      return !leaf.empty() && name.size() >= leaf.size() && name.compare(name.size() - leaf.size(), leaf.size(), leaf) == 0;
    };
    return ends_with(n.ln1_w) || ends_with(n.ln1_b) || ends_with(n.ln2_w) || ends_with(n.ln2_b) ||
           name == n.final_norm_w || name == n.final_norm_b;
  }
  // A standard normal from (key, index) by Box-Muller on one 64-bit hash.
  static float normal(uint64_t key, uint64_t index) {
    const uint64_t h = splitmix64(key ^ splitmix64(index));
    const float u1 = static_cast<float>((h >> 40) + 1) * 0x1.0p-24f;
    const float u2 = static_cast<float>((h >> 16) & 0xffffff) * 0x1.0p-24f;
    return std::sqrt(-2.0f * std::log(u1)) * std::cos(6.2831853f * u2);
  }

  ModelConfig config_;
  uint64_t seed_;
  std::map<std::string, std::vector<int64_t>> shapes_;  // by name without the base prefix
};

}  // namespace

Result<std::unique_ptr<WeightSource>> open_weight_source(const std::string& model,
                                                         const ModelConfig& config, uint64_t seed) {
  if (is_synthetic_model(model)) return std::unique_ptr<WeightSource>(new SyntheticSource(config, seed));
  KVMESH_ASSIGN_OR_RETURN(auto ckpt, Checkpoint::open_dir(model));
  return std::unique_ptr<WeightSource>(new CheckpointSource(std::move(ckpt)));
}

}  // namespace kvmesh
