// GPT-2 (GPT2LMHeadModel): config.json fields and tensor names. Pre-LayerNorm, learned positions,
// fused q|k|v with biases in Conv1D layout ([in, out]), scaled attention, tied head.
#include "common/families/family.h"

namespace kvmesh {
namespace {

using namespace config_fields;

// GPT2Config switches that change the model's arithmetic: each must be absent or have the value
// kvmesh computes, so a checkpoint that needs another never runs silently wrong.
// (reorder_and_upcast_attn is not here: it only upcasts attention to fp32, which kvmesh always does.)
struct FixedSwitch {
  const char* field;
  bool supported;
  const char* what;
};
constexpr FixedSwitch kFixedSwitches[] = {
    {"scale_attn_weights", true, "in kvmesh attention scores are always scaled by 1/sqrt(head_dim)"},
    {"scale_attn_by_inverse_layer_idx", false, "in kvmesh attention scores are not scaled by 1/(layer index + 1)"},
    {"add_cross_attention", false, "in kvmesh the model has no cross-attention (it serves decoder-only language models)"},
    {"tie_word_embeddings", true, "in kvmesh the output projection is the token embedding (wte); untied heads are not supported"},
};

Status parse(const json& j, const std::string& source, ModelConfig* c) {
  for (const FixedSwitch& s : kFixedSwitches) KVMESH_RETURN_IF_ERROR(expect_bool(j, source, s.field, s.supported, s.what));
  KVMESH_RETURN_IF_ERROR(get_int(j, source, "n_layer", true, &c->n_layer));
  KVMESH_RETURN_IF_ERROR(get_int(j, source, "n_embd", true, &c->n_embd));
  KVMESH_RETURN_IF_ERROR(get_int(j, source, "n_head", true, &c->n_head));
  KVMESH_RETURN_IF_ERROR(get_int(j, source, "vocab_size", true, &c->vocab_size));
  bool has_positions = false;
  KVMESH_RETURN_IF_ERROR(get_int(j, source, "n_positions", false, &c->n_positions, &has_positions));
  if (!has_positions) {
    KVMESH_RETURN_IF_ERROR(get_int(j, source, "n_ctx", false, &c->n_positions, &has_positions));
    if (!has_positions) return invalid_argument(source + ": missing required field 'n_positions' (or 'n_ctx')");
  }
  c->n_inner = 0;
  KVMESH_RETURN_IF_ERROR(get_optional_int(j, source, "n_inner", 0, &c->n_inner));
  if (c->n_inner == 0 && c->n_embd > 0 && c->n_embd <= 65536) c->n_inner = 4 * c->n_embd;
  KVMESH_RETURN_IF_ERROR(get_optional_int(j, source, "bos_token_id", -1, &c->bos_token_id));
  KVMESH_RETURN_IF_ERROR(get_optional_int(j, source, "eos_token_id", -1, &c->eos_token_id));
  KVMESH_RETURN_IF_ERROR(get_float(j, source, "layer_norm_epsilon", &c->layer_norm_epsilon));
  return get_activation(j, source, Activation::gelu_new, &c->activation);
}

nlohmann::ordered_json to_json(const ModelConfig& c) {
  using ojson = nlohmann::ordered_json;
  ojson j;
  j["_name_or_path"] = c.name;
  j["activation_function"] = activation_name(c.activation);
  j["architectures"] = {"GPT2LMHeadModel"};
  j["attn_pdrop"] = 0.1;
  j["bos_token_id"] = c.bos_token_id >= 0 ? ojson(c.bos_token_id) : ojson(nullptr);
  j["embd_pdrop"] = 0.1;
  j["eos_token_id"] = c.eos_token_id >= 0 ? ojson(c.eos_token_id) : ojson(nullptr);
  j["initializer_range"] = 0.02;
  j["layer_norm_epsilon"] = float_as_short_double(c.layer_norm_epsilon);
  j["model_type"] = "gpt2";
  j["n_ctx"] = c.n_positions;
  j["n_embd"] = c.n_embd;
  j["n_head"] = c.n_head;
  j["n_inner"] = c.n_inner == 4 * c.n_embd ? ojson(nullptr) : ojson(c.n_inner);
  j["n_layer"] = c.n_layer;
  j["n_positions"] = c.n_positions;
  j["resid_pdrop"] = 0.1;
  j["scale_attn_weights"] = true;
  j["tie_word_embeddings"] = true;
  j["use_cache"] = true;
  j["vocab_size"] = c.vocab_size;
  return j;
}

void set_defaults(ModelConfig* c) {
  const ModelConfig gpt2;
  c->model_type = gpt2.model_type;
  c->tied_head = true;
  c->vocab_padded = false;
  c->prepend_bos = gpt2.prepend_bos;
  c->position_offset = gpt2.position_offset;
  c->scale_attention = gpt2.scale_attention;
  c->qkv_bias = gpt2.qkv_bias;
  c->layer_window.clear();
  c->activation = Activation::gelu_new;
  c->bos_token_id = c->eos_token_id = 50256;
}

TensorNaming naming() {
  TensorNaming n;
  n.base_prefix = "transformer.";
  n.tok_embed = "wte.weight";
  n.pos_embed = "wpe.weight";
  n.final_norm_w = "ln_f.weight";
  n.final_norm_b = "ln_f.bias";
  n.layer_prefix = "h.";
  n.ln1_w = "ln_1.weight";
  n.ln1_b = "ln_1.bias";
  n.qkv_w = "attn.c_attn.weight";
  n.qkv_b = "attn.c_attn.bias";
  n.out_w = "attn.c_proj.weight";
  n.out_b = "attn.c_proj.bias";
  n.ln2_w = "ln_2.weight";
  n.ln2_b = "ln_2.bias";
  n.fc1_w = "mlp.c_fc.weight";
  n.fc1_b = "mlp.c_fc.bias";
  n.fc2_w = "mlp.c_proj.weight";
  n.fc2_b = "mlp.c_proj.bias";
  n.ignored_leaves = {"attn.bias", "attn.masked_bias"};
  return n;
}

}  // namespace

const ModelFamily& gpt2_family() {
  static const ModelFamily f{"gpt2", "gpt2", "GPT2LMHeadModel", naming(), &parse, &to_json, &set_defaults};
  return f;
}

}  // namespace kvmesh
