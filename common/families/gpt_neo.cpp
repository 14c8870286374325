// GPT-Neo (GPTNeoForCausalLM): config.json fields and tensor names. Pre-LayerNorm, learned
// positions, per-layer global or local (windowed) attention from attention_types, unscaled
// attention scores, separate q/k/v without biases in nn.Linear layout ([out, in]), tied head.
#include "common/families/family.h"

namespace kvmesh {
namespace {

using namespace config_fields;

// attention_types ([[["global", "local"], 12]]: each pattern repeated) -> one window per layer.
Status expand_attention_types(const json& j, const std::string& source, int window, std::vector<int>* out) {
  const std::string where = source + ": field 'attention_types' ";
  auto it = j.find("attention_types");
  json types = it == j.end() ? json::parse(R"([[["global", "local"], 12]])") : *it;
  if (!types.is_array())
    return invalid_argument(where + "must be a list of [[types...], repeats], got " + brief(types));
  for (const json& item : types) {
    if (!item.is_array() || item.size() != 2 || !item[0].is_array() || !item[1].is_number_integer() ||
        item[1].get<int64_t>() < 0 || item[1].get<int64_t>() > 1024)
      return invalid_argument(where + "entry " + brief(item) + " is not [[types...], repeats]");
    for (int64_t r = 0; r < item[1].get<int64_t>(); ++r) {
      for (const json& type : item[0]) {
        if (type == "global") out->push_back(0);
        else if (type == "local") out->push_back(window);
        else return invalid_argument(where + "has attention type " + brief(type) + " (supported: global, local)");
        if (out->size() > 1024) return invalid_argument(where + "describes more than 1024 layers");
      }
    }
  }
  return Status::ok();
}

Status parse(const json& j, const std::string& source, ModelConfig* c) {
  KVMESH_RETURN_IF_ERROR(get_bool(j, source, "tie_word_embeddings", &c->tied_head));
  KVMESH_RETURN_IF_ERROR(get_int(j, source, "num_layers", true, &c->n_layer));
  KVMESH_RETURN_IF_ERROR(get_int(j, source, "hidden_size", true, &c->n_embd));
  KVMESH_RETURN_IF_ERROR(get_int(j, source, "num_heads", true, &c->n_head));
  KVMESH_RETURN_IF_ERROR(get_int(j, source, "max_position_embeddings", true, &c->n_positions));
  KVMESH_RETURN_IF_ERROR(get_int(j, source, "vocab_size", true, &c->vocab_size));
  KVMESH_RETURN_IF_ERROR(check_heads_divide(source, "hidden_size", "num_heads", *c));
  c->n_inner = 0;
  KVMESH_RETURN_IF_ERROR(get_optional_int(j, source, "intermediate_size", 0, &c->n_inner));
  if (c->n_inner == 0 && c->n_embd > 0 && c->n_embd <= 65536) c->n_inner = 4 * c->n_embd;
  int window = 256;
  KVMESH_RETURN_IF_ERROR(get_int(j, source, "window_size", false, &window));
  if (window < 1) return invalid_argument(source + ": window_size = " + std::to_string(window) + " must be at least 1");
  c->layer_window.clear();
  KVMESH_RETURN_IF_ERROR(expand_attention_types(j, source, window, &c->layer_window));
  if (static_cast<int>(c->layer_window.size()) != c->n_layer) {
    return invalid_argument(source + ": attention_types describes " + std::to_string(c->layer_window.size()) +
                            " layers but num_layers is " + std::to_string(c->n_layer));
  }
  KVMESH_RETURN_IF_ERROR(get_optional_int(j, source, "bos_token_id", -1, &c->bos_token_id));
  KVMESH_RETURN_IF_ERROR(get_optional_int(j, source, "eos_token_id", -1, &c->eos_token_id));
  KVMESH_RETURN_IF_ERROR(get_float(j, source, "layer_norm_epsilon", &c->layer_norm_epsilon));
  c->scale_attention = false;
  c->qkv_bias = false;
  return get_activation(j, source, Activation::gelu_new, &c->activation);
}

// layer_window as attention_types: the shortest pattern whose repeats give every layer.
nlohmann::ordered_json attention_types(const ModelConfig& c) {
  const int n = static_cast<int>(c.layer_window.size());
  int period = n;
  for (int p = 1; p < n; ++p) {
    if (n % p != 0) continue;
    bool repeats = true;
    for (int i = p; i < n && repeats; ++i) repeats = c.layer_window[i] == c.layer_window[i - p];
    if (repeats) {
      period = p;
      break;
    }
  }
  nlohmann::ordered_json pattern = nlohmann::ordered_json::array();
  for (int i = 0; i < period; ++i) pattern.push_back(c.layer_window[i] > 0 ? "local" : "global");
  return nlohmann::ordered_json::array({nlohmann::ordered_json::array({pattern, n / std::max(period, 1)})});
}

nlohmann::ordered_json to_json(const ModelConfig& c) {
  using ojson = nlohmann::ordered_json;
  int window = 256;
  for (int w : c.layer_window)
    if (w > 0) window = w;
  ojson layers = ojson::array();
  for (int w : c.layer_window) layers.push_back(w > 0 ? "local" : "global");
  ojson j;
  j["_name_or_path"] = c.name;
  j["activation_function"] = activation_name(c.activation);
  j["architectures"] = {"GPTNeoForCausalLM"};
  j["attention_dropout"] = 0;
  j["attention_layers"] = layers;
  j["attention_types"] = attention_types(c);
  j["bos_token_id"] = c.bos_token_id >= 0 ? ojson(c.bos_token_id) : ojson(nullptr);
  j["embed_dropout"] = 0;
  j["eos_token_id"] = c.eos_token_id >= 0 ? ojson(c.eos_token_id) : ojson(nullptr);
  j["hidden_size"] = c.n_embd;
  j["initializer_range"] = 0.02;
  j["intermediate_size"] = c.n_inner == 4 * c.n_embd ? ojson(nullptr) : ojson(c.n_inner);
  j["layer_norm_epsilon"] = float_as_short_double(c.layer_norm_epsilon);
  j["max_position_embeddings"] = c.n_positions;
  j["model_type"] = "gpt_neo";
  j["num_heads"] = c.n_head;
  j["num_layers"] = c.n_layer;
  j["resid_dropout"] = 0;
  if (!c.tied_head) j["tie_word_embeddings"] = false;
  j["use_cache"] = true;
  j["vocab_size"] = c.vocab_size;
  j["window_size"] = window;
  return j;
}

void set_defaults(ModelConfig* c) {
  c->model_type = "gpt_neo";
  c->tied_head = true;
  c->vocab_padded = false;
  c->prepend_bos = false;
  c->position_offset = 0;
  c->scale_attention = false;
  c->qkv_bias = false;
  c->layer_window.assign(static_cast<size_t>(std::max(c->n_layer, 0)), 0);
  for (size_t i = 1; i < c->layer_window.size(); i += 2) c->layer_window[i] = 256;  // global, local, ...
  c->activation = Activation::gelu_new;
  c->bos_token_id = c->eos_token_id = 50256;
}

// GPT-2's names (GPT-Neo keeps its embeddings, norms and MLP), with attention as separate
// nn.Linear q/k/v and out_proj under attn.attention.
TensorNaming naming() {
  TensorNaming n = gpt2_family().names;
  n.qkv_w.clear();
  n.qkv_b.clear();
  n.q_w = "attn.attention.q_proj.weight";
  n.k_w = "attn.attention.k_proj.weight";
  n.v_w = "attn.attention.v_proj.weight";
  n.out_w = "attn.attention.out_proj.weight";
  n.out_b = "attn.attention.out_proj.bias";
  n.ignored_leaves = {"attn.attention.bias", "attn.attention.masked_bias"};
  n.linear_layout = true;
  return n;
}

}  // namespace

const ModelFamily& gpt_neo_family() {
  static const ModelFamily f{"gpt_neo", "gpt-neo", "GPTNeoForCausalLM", naming(), &parse, &to_json, &set_defaults};
  return f;
}

}  // namespace kvmesh
