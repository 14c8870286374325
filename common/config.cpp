// ModelConfig: parsing and validation of Hugging Face GPT-2 config.json, parameter count, and the
// config.json that kvmesh-ckpt writes.
#include "common/config.h"

#include <algorithm>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/file_read.h"

namespace kvmesh {
namespace {

using json = nlohmann::json;

constexpr int kMaxLayers = 1024;
constexpr int kMaxEmbd = 65536;
constexpr int kMaxInner = 1 << 20;
constexpr int kMaxPositions = 1 << 20;
constexpr int kMaxVocab = 10'000'000;
constexpr int kDefaultEos = 50256;

std::string brief(const json& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

// Reads an integer field into *out. Absent: *present = false (when allowed) or an error.
Status get_int(const json& j, const std::string& source, const char* field, bool required, int* out,
               bool* present = nullptr) {
  if (present != nullptr) *present = false;
  auto it = j.find(field);
  if (it == j.end()) {
    if (required) return invalid_argument(source + ": missing required field '" + field + "'");
    return Status::ok();
  }
  if (!it->is_number_integer()) {
    return invalid_argument(source + ": field '" + field + "' must be an integer, got " + brief(*it));
  }
  int64_t v = it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)
                  ? INT64_MAX
                  : it->get<int64_t>();
  if (v < INT_MIN || v > INT_MAX) {
    return invalid_argument(source + ": field '" + field + "' = " + brief(*it) + " is out of range");
  }
  *out = static_cast<int>(v);
  if (present != nullptr) *present = true;
  return Status::ok();
}

// An integer that may be absent (keeps *out) or null (*out = null_value).
Status get_optional_int(const json& j, const std::string& source, const char* field, int null_value, int* out) {
  auto it = j.find(field);
  if (it != j.end() && it->is_null()) {
    *out = null_value;
    return Status::ok();
  }
  return get_int(j, source, field, /*required=*/false, out);
}

Result<Activation> parse_activation(const json& j, const std::string& source) {
  auto it = j.find("activation_function");
  if (it == j.end()) return Activation::gelu_new;  // the GPT2Config default
  if (!it->is_string()) {
    return invalid_argument(source + ": field 'activation_function' must be a string, got " + brief(*it));
  }
  const std::string a = it->get<std::string>();
  if (a == "gelu_new" || a == "gelu_pytorch_tanh") return Activation::gelu_new;
  if (a == "gelu") return Activation::gelu;
  if (a == "gelu_fast") return Activation::gelu_fast;
  if (a == "relu") return Activation::relu;
  return invalid_argument(source + ": unknown activation_function '" + a +
                          "' (supported: gelu_new, gelu_pytorch_tanh, gelu, gelu_fast, relu)");
}

Status check_model_type(const json& j, const std::string& source) {
  auto it = j.find("model_type");
  if (it == j.end()) return Status::ok();
  if (!it->is_string()) return invalid_argument(source + ": field 'model_type' must be a string, got " + brief(*it));
  const std::string t = it->get<std::string>();
  if (t != "gpt2") {
    return invalid_argument(source + ": model_type '" + t + "' is not supported (kvmesh serves gpt2 models)");
  }
  return Status::ok();
}

// GPT2Config switches that change the model's arithmetic: each must be absent or have the value
// kvmesh computes, so a checkpoint that needs another never runs silently wrong.
// (reorder_and_upcast_attn is not here: it only upcasts attention to fp32, which kvmesh always does.)
struct FixedSwitch {
  const char* field;
  bool supported;
  const char* what;
};
constexpr FixedSwitch kFixedSwitches[] = {
    {"scale_attn_weights", true, "attention scores are always scaled by 1/sqrt(head_dim)"},
    {"scale_attn_by_inverse_layer_idx", false, "attention scores are not scaled by 1/(layer index + 1)"},
    {"add_cross_attention", false, "the model has no cross-attention (it serves decoder-only language models)"},
    {"tie_word_embeddings", true, "the output projection is the token embedding (wte); untied heads are not supported"},
};

Status check_fixed_switches(const json& j, const std::string& source) {
  for (const FixedSwitch& s : kFixedSwitches) {
    auto it = j.find(s.field);
    if (it == j.end() || it->is_null()) continue;
    if (!it->is_boolean()) {
      return invalid_argument(source + ": field '" + s.field + "' must be a boolean, got " + brief(*it));
    }
    if (it->get<bool>() != s.supported) {
      return invalid_argument(source + ": " + s.field + " = " + (s.supported ? "false" : "true") +
                              " is not supported: in kvmesh " + s.what);
    }
  }
  return Status::ok();
}

// The shortest decimal that reads back as the same float ("1e-05", not "9.99999974737875e-06").
double float_as_short_double(float f) {
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof(buf), f);
  return std::strtod(std::string(buf, res.ptr).c_str(), nullptr);
}

std::string range_msg(const char* field, int64_t v, int64_t lo, int64_t hi) {
  return std::string(field) + " = " + std::to_string(v) + " is outside [" + std::to_string(lo) + ", " +
         std::to_string(hi) + "]";
}

}  // namespace

const char* activation_name(Activation a) {
  switch (a) {
    case Activation::gelu_new: return "gelu_new";
    case Activation::gelu: return "gelu";
    case Activation::gelu_fast: return "gelu_fast";
    case Activation::relu: return "relu";
  }
  return "?";
}

Status ModelConfig::validate() const {
  struct Bound {
    const char* field;
    int64_t value, lo, hi;
  };
  const Bound bounds[] = {{"n_layer", n_layer, 1, kMaxLayers},      {"n_embd", n_embd, 1, kMaxEmbd},
                          {"n_head", n_head, 1, kMaxEmbd},          {"n_inner", n_inner, 1, kMaxInner},
                          {"n_positions", n_positions, 1, kMaxPositions}, {"vocab_size", vocab_size, 1, kMaxVocab}};
  for (const Bound& b : bounds) {
    if (b.value < b.lo || b.value > b.hi) return invalid_argument(range_msg(b.field, b.value, b.lo, b.hi));
  }
  if (n_embd % n_head != 0) {
    return invalid_argument("n_embd (" + std::to_string(n_embd) + ") is not divisible by n_head (" +
                            std::to_string(n_head) + ")");
  }
  if (!(layer_norm_epsilon > 0.0f) || !(layer_norm_epsilon < 1.0f)) {
    return invalid_argument("layer_norm_epsilon = " + std::to_string(layer_norm_epsilon) + " is outside (0, 1)");
  }
  if (bos_token_id < -1 || bos_token_id >= vocab_size) {
    return invalid_argument(range_msg("bos_token_id", bos_token_id, -1, vocab_size - 1) + " (-1: none)");
  }
  if (eos_token_id < -1 || eos_token_id >= vocab_size) {
    return invalid_argument(range_msg("eos_token_id", eos_token_id, -1, vocab_size - 1) + " (-1: none)");
  }
  return Status::ok();
}

int64_t ModelConfig::n_params() const {
  const int64_t e = n_embd;
  const int64_t i = n_inner;
  const int64_t per_layer = 2 * e                  // ln_1
                            + e * 3 * e + 3 * e    // attn.c_attn
                            + e * e + e            // attn.c_proj
                            + 2 * e                // ln_2
                            + e * i + i            // mlp.c_fc
                            + i * e + e;           // mlp.c_proj
  return static_cast<int64_t>(vocab_size) * e + static_cast<int64_t>(n_positions) * e + n_layer * per_layer +
         2 * e;
}

Result<ModelConfig> parse_model_config(const std::string& json_text, const std::string& source) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    return invalid_argument(source + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) return invalid_argument(source + ": not a JSON object");
  KVMESH_RETURN_IF_ERROR(check_model_type(j, source));
  KVMESH_RETURN_IF_ERROR(check_fixed_switches(j, source));
  ModelConfig c;
  KVMESH_RETURN_IF_ERROR(get_int(j, source, "n_layer", true, &c.n_layer));
  KVMESH_RETURN_IF_ERROR(get_int(j, source, "n_embd", true, &c.n_embd));
  KVMESH_RETURN_IF_ERROR(get_int(j, source, "n_head", true, &c.n_head));
  KVMESH_RETURN_IF_ERROR(get_int(j, source, "vocab_size", true, &c.vocab_size));
  bool has_positions = false;
  KVMESH_RETURN_IF_ERROR(get_int(j, source, "n_positions", false, &c.n_positions, &has_positions));
  if (!has_positions) {
    KVMESH_RETURN_IF_ERROR(get_int(j, source, "n_ctx", false, &c.n_positions, &has_positions));
    if (!has_positions) return invalid_argument(source + ": missing required field 'n_positions' (or 'n_ctx')");
  }
  c.n_inner = 0;
  KVMESH_RETURN_IF_ERROR(get_optional_int(j, source, "n_inner", 0, &c.n_inner));
  if (c.n_inner == 0 && c.n_embd > 0 && c.n_embd <= kMaxEmbd) c.n_inner = 4 * c.n_embd;
  KVMESH_RETURN_IF_ERROR(get_optional_int(j, source, "bos_token_id", -1, &c.bos_token_id));
  KVMESH_RETURN_IF_ERROR(get_optional_int(j, source, "eos_token_id", -1, &c.eos_token_id));
  if (auto it = j.find("layer_norm_epsilon"); it != j.end()) {
    if (!it->is_number()) {
      return invalid_argument(source + ": field 'layer_norm_epsilon' must be a number, got " + brief(*it));
    }
    c.layer_norm_epsilon = static_cast<float>(it->get<double>());
  }
  KVMESH_ASSIGN_OR_RETURN(c.activation, parse_activation(j, source));
  Status valid = c.validate();
  if (!valid.is_ok()) return valid.with_context(source);
  return c;
}

Result<ModelConfig> load_model_config(const std::string& path) {
  constexpr uint64_t kMaxConfigBytes = 16ull << 20;
  KVMESH_ASSIGN_OR_RETURN(std::string text, read_regular_file(path, kMaxConfigBytes));
  KVMESH_ASSIGN_OR_RETURN(ModelConfig c, parse_model_config(text, path));
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::absolute(path, ec).parent_path();
  if (!ec && !dir.filename().empty()) c.name = dir.filename().string();
  return c;
}

std::string model_config_to_json(const ModelConfig& c) {
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
  return j.dump(2) + "\n";
}

const std::vector<std::string>& kv_dtype_names() {
  static const std::vector<std::string> names = {"f32", "fp32", "bf16", "f16", "fp16", "i8", "int8"};
  return names;
}

bool parse_kv_dtype(std::string_view name, DType* out) {
  const auto& names = kv_dtype_names();
  if (std::find(names.begin(), names.end(), name) == names.end()) return false;
  return parse_dtype(name, out);
}

}  // namespace kvmesh
