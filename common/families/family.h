// A model family: how its config.json fills the model description (ModelConfig) and how its
// checkpoints name and lay out tensors. One small file per family (gpt2.cpp, opt.cpp, gpt_neo.cpp)
// defines one; the rest of kvmesh reads the description and the naming, never a family name.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/config.h"
#include "common/status.h"

namespace kvmesh {

// Tensor names of a family without the base model's prefix. A layer's tensor is layer_prefix +
// index + "." + its leaf. An empty name: the family has no such tensor.
struct TensorNaming {
  std::string base_prefix;  // what the ...ForCausalLM class puts before its base model's names
  std::string tok_embed, pos_embed, final_norm_w, final_norm_b;
  std::string head = "lm_head.weight";  // an untied head, or a tied head's copy (never prefixed)
  std::string layer_prefix;
  std::string ln1_w, ln1_b;
  std::string qkv_w, qkv_b;                  // fused q|k|v ([E, 3E] in Conv1D layout); empty: separate
  std::string q_w, k_w, v_w, q_b, k_b, v_b;  // separate projections
  std::string out_w, out_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b;
  std::vector<std::string> ignored_leaves;   // per-layer buffers some files keep (causal masks)
  bool linear_layout = false;                // matrices stored [out, in] (nn.Linear), not [in, out] (Conv1D)

  std::string layer(int i, const std::string& leaf) const {
    return layer_prefix + std::to_string(i) + "." + leaf;
  }
};

struct ModelFamily {
  const char* model_type;    // config.json's model_type
  const char* arch;          // kvmesh-ckpt --arch
  const char* architecture;  // config.json's architectures[0]
  TensorNaming names;
  // Fills *c (whose defaults are GPT-2's) from config.json; errors name source and the field.
  Status (*parse)(const nlohmann::json& j, const std::string& source, ModelConfig* c);
  // config.json as Hugging Face writes it for c.
  nlohmann::ordered_json (*to_json)(const ModelConfig& c);
  // Sets the family's choices (model_type, positions, attention, activation, special tokens) on a
  // config whose shape (n_layer, n_embd, ...) is set, as the family's published models have them.
  void (*set_defaults)(ModelConfig* c);
};

const ModelFamily& gpt2_family();
const ModelFamily& opt_family();
const ModelFamily& gpt_neo_family();

const std::vector<const ModelFamily*>& model_families();
const ModelFamily* find_family_by_type(const std::string& model_type);
const ModelFamily* find_family_by_arch(const std::string& arch);
// The family of a config (by its model_type); KVMESH_CHECK when unknown (parsing refuses those).
const ModelFamily& family_of(const ModelConfig& c);

// A tensor of a model's checkpoint: its name (base prefix included) and shape.
struct ModelTensor {
  std::string name;
  std::vector<int64_t> shape;
};
// Every tensor a model's checkpoint holds, in the order kvmesh-ckpt writes them (an untied head
// last; a tied head's copy not included).
std::vector<ModelTensor> model_tensors(const ModelConfig& c);
// A checkpoint name without the family's base prefix (as given when it has none).
std::string strip_base_prefix(const std::string& name, const TensorNaming& names);

// Reading config.json fields: errors name source and the field.
namespace config_fields {
using json = nlohmann::json;
std::string brief(const json& v);
// An integer into *out. Absent: *present = false (when allowed) or an error.
Status get_int(const json& j, const std::string& source, const char* field, bool required, int* out,
               bool* present = nullptr);
// An integer that may be absent (keeps *out) or null (*out = null_value).
Status get_optional_int(const json& j, const std::string& source, const char* field, int null_value, int* out);
// A boolean; absent or null keeps *out.
Status get_bool(const json& j, const std::string& source, const char* field, bool* out);
// A number; absent keeps *out.
Status get_float(const json& j, const std::string& source, const char* field, float* out);
// activation_function (`fallback` when absent).
Status get_activation(const json& j, const std::string& source, Activation fallback, Activation* out);
// A boolean switch that must be absent, null or `supported` (else: "<field> = <v> is not supported: <what>").
Status expect_bool(const json& j, const std::string& source, const char* field, bool supported, const char* what);
// The width (n_embd) divisible by the head count, named by the family's fields.
Status check_heads_divide(const std::string& source, const char* width_field, const char* heads_field,
                          const ModelConfig& c);
// The shortest decimal that reads back as the same float ("1e-05").
double float_as_short_double(float f);
}  // namespace config_fields

}  // namespace kvmesh
