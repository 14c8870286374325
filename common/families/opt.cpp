// OPT (OPTForCausalLM): config.json fields and tensor names. Pre-LayerNorm variants only, learned
// positions offset by 2, separate q/k/v with biases in nn.Linear layout ([out, in]), ReLU, tied
// head, "</s>" (bos_token_id) before every prompt.
#include "common/families/family.h"

namespace kvmesh {
namespace {

using namespace config_fields;

constexpr int kPositionOffset = 2;  // OPTLearnedPositionalEmbedding's offset

Status parse(const json& j, const std::string& source, ModelConfig* c) {
  KVMESH_RETURN_IF_ERROR(expect_bool(j, source, "do_layer_norm_before", true,
                                     "post-LayerNorm OPT models (opt-350m) are not served"));
  KVMESH_RETURN_IF_ERROR(expect_bool(j, source, "_remove_final_layer_norm", false,
                                     "the final LayerNorm is always applied"));
  KVMESH_RETURN_IF_ERROR(expect_bool(j, source, "enable_bias", true, "projections always have biases"));
  KVMESH_RETURN_IF_ERROR(expect_bool(j, source, "layer_norm_elementwise_affine", true,
                                     "LayerNorms always have a weight and a bias"));
  KVMESH_RETURN_IF_ERROR(get_bool(j, source, "tie_word_embeddings", &c->tied_head));
  KVMESH_RETURN_IF_ERROR(get_int(j, source, "num_hidden_layers", true, &c->n_layer));
  KVMESH_RETURN_IF_ERROR(get_int(j, source, "hidden_size", true, &c->n_embd));
  KVMESH_RETURN_IF_ERROR(get_int(j, source, "num_attention_heads", true, &c->n_head));
  KVMESH_RETURN_IF_ERROR(get_int(j, source, "ffn_dim", true, &c->n_inner));
  KVMESH_RETURN_IF_ERROR(get_int(j, source, "max_position_embeddings", true, &c->n_positions));
  KVMESH_RETURN_IF_ERROR(get_int(j, source, "vocab_size", true, &c->vocab_size));
  KVMESH_RETURN_IF_ERROR(check_heads_divide(source, "hidden_size", "num_attention_heads", *c));
  int proj_dim = c->n_embd;
  KVMESH_RETURN_IF_ERROR(get_optional_int(j, source, "word_embed_proj_dim", c->n_embd, &proj_dim));
  if (proj_dim != c->n_embd) {
    return invalid_argument(source + ": word_embed_proj_dim = " + std::to_string(proj_dim) +
                            " differs from hidden_size = " + std::to_string(c->n_embd) +
                            " (project_in/project_out, as in opt-350m): not supported");
  }
  c->bos_token_id = c->eos_token_id = 2;
  KVMESH_RETURN_IF_ERROR(get_optional_int(j, source, "bos_token_id", -1, &c->bos_token_id));
  KVMESH_RETURN_IF_ERROR(get_optional_int(j, source, "eos_token_id", -1, &c->eos_token_id));
  c->layer_norm_epsilon = 1e-5f;  // nn.LayerNorm's default: OPTConfig has no field for it
  c->prepend_bos = c->bos_token_id >= 0;
  c->vocab_padded = true;
  c->position_offset = kPositionOffset;
  return get_activation(j, source, Activation::relu, &c->activation);
}

nlohmann::ordered_json to_json(const ModelConfig& c) {
  using ojson = nlohmann::ordered_json;
  ojson j;
  j["_name_or_path"] = c.name;
  j["_remove_final_layer_norm"] = false;
  j["activation_dropout"] = 0.0;
  j["activation_function"] = activation_name(c.activation);
  j["architectures"] = {"OPTForCausalLM"};
  j["attention_dropout"] = 0.0;
  j["bos_token_id"] = c.bos_token_id >= 0 ? ojson(c.bos_token_id) : ojson(nullptr);
  j["do_layer_norm_before"] = true;
  j["dropout"] = 0.1;
  j["enable_bias"] = true;
  j["eos_token_id"] = c.eos_token_id >= 0 ? ojson(c.eos_token_id) : ojson(nullptr);
  j["ffn_dim"] = c.n_inner;
  j["hidden_size"] = c.n_embd;
  j["init_std"] = 0.02;
  j["layer_norm_elementwise_affine"] = true;
  j["layerdrop"] = 0.0;
  j["max_position_embeddings"] = c.n_positions;
  j["model_type"] = "opt";
  j["num_attention_heads"] = c.n_head;
  j["num_hidden_layers"] = c.n_layer;
  j["pad_token_id"] = 1;
  j["prefix"] = "</s>";
  if (!c.tied_head) j["tie_word_embeddings"] = false;
  j["use_cache"] = true;
  j["vocab_size"] = c.vocab_size;
  j["word_embed_proj_dim"] = c.n_embd;
  return j;
}

void set_defaults(ModelConfig* c) {
  c->model_type = "opt";
  c->prepend_bos = true;
  c->tied_head = true;
  c->vocab_padded = true;
  c->position_offset = kPositionOffset;
  c->scale_attention = true;
  c->qkv_bias = true;
  c->layer_window.clear();
  c->activation = Activation::relu;
  c->layer_norm_epsilon = 1e-5f;
  c->bos_token_id = c->eos_token_id = 2;
}

TensorNaming naming() {
  TensorNaming n;
  n.base_prefix = "model.";
  n.tok_embed = "decoder.embed_tokens.weight";
  n.pos_embed = "decoder.embed_positions.weight";
  n.final_norm_w = "decoder.final_layer_norm.weight";
  n.final_norm_b = "decoder.final_layer_norm.bias";
  n.layer_prefix = "decoder.layers.";
  n.ln1_w = "self_attn_layer_norm.weight";
  n.ln1_b = "self_attn_layer_norm.bias";
  n.q_w = "self_attn.q_proj.weight";
  n.k_w = "self_attn.k_proj.weight";
  n.v_w = "self_attn.v_proj.weight";
  n.q_b = "self_attn.q_proj.bias";
  n.k_b = "self_attn.k_proj.bias";
  n.v_b = "self_attn.v_proj.bias";
  n.out_w = "self_attn.out_proj.weight";
  n.out_b = "self_attn.out_proj.bias";
  n.ln2_w = "final_layer_norm.weight";
  n.ln2_b = "final_layer_norm.bias";
  n.fc1_w = "fc1.weight";
  n.fc1_b = "fc1.bias";
  n.fc2_w = "fc2.weight";
  n.fc2_b = "fc2.bias";
  n.linear_layout = true;
  return n;
}

}  // namespace

const ModelFamily& opt_family() {
  static const ModelFamily f{"opt", "opt", "OPTForCausalLM", naming(), &parse, &to_json, &set_defaults};
  return f;
}

}  // namespace kvmesh
