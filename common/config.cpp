// ModelConfig: parsing (through the family config.json names) and validation, parameter count, and
// the config.json that kvmesh-ckpt writes.
#include "common/config.h"

#include <algorithm>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/families/family.h"
#include "common/file_read.h"

namespace kvmesh {
namespace {

using json = nlohmann::json;
using namespace config_fields;

constexpr int kMaxLayers = 1024;
constexpr int kMaxEmbd = 65536;
constexpr int kMaxInner = 1 << 20;
constexpr int kMaxPositions = 1 << 20;
constexpr int kMaxVocab = 10'000'000;

// The family config.json names (model_type absent: GPT-2).
Result<const ModelFamily*> family_for(const json& j, const std::string& source) {
  auto it = j.find("model_type");
  if (it == j.end()) return &gpt2_family();
  if (!it->is_string()) return invalid_argument(source + ": field 'model_type' must be a string, got " + brief(*it));
  const std::string t = it->get<std::string>();
  if (const ModelFamily* f = find_family_by_type(t)) return f;
  std::string known;
  for (const ModelFamily* f : model_families()) known += (known.empty() ? "" : ", ") + std::string(f->model_type);
  return invalid_argument(source + ": model_type '" + t + "' is not supported (kvmesh serves " + known + ")");
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
  if (find_family_by_type(model_type) == nullptr) return invalid_argument("model_type '" + model_type + "' is unknown");
  if (prepend_bos && bos_token_id < 0)
    return invalid_argument("the family puts bos_token_id before prompts but it is null");
  if (position_offset < 0 || position_offset > 1024)
    return invalid_argument(range_msg("position_offset", position_offset, 0, 1024));
  if (!layer_window.empty() && static_cast<int>(layer_window.size()) != n_layer) {
    return invalid_argument("the attention layers describe " + std::to_string(layer_window.size()) +
                            " layers but the model has " + std::to_string(n_layer));
  }
  for (int w : layer_window)
    if (w < 0) return invalid_argument("an attention window is negative (" + std::to_string(w) + ")");
  return Status::ok();
}

float ModelConfig::attention_scale() const {
  return scale_attention ? 1.0f / std::sqrt(static_cast<float>(head_dim())) : 1.0f;
}

int64_t ModelConfig::n_params() const {
  int64_t n = 0;
  for (const ModelTensor& t : model_tensors(*this)) {
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    n += numel;
  }
  return n;
}

Result<ModelConfig> parse_model_config(const std::string& json_text, const std::string& source) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    return invalid_argument(source + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) return invalid_argument(source + ": not a JSON object");
  KVMESH_ASSIGN_OR_RETURN(const ModelFamily* family, family_for(j, source));
  ModelConfig c;
  c.model_type = family->model_type;
  family->set_defaults(&c);
  KVMESH_RETURN_IF_ERROR(family->parse(j, source, &c));
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

std::string model_config_to_json(const ModelConfig& c) { return family_of(c).to_json(c).dump(2) + "\n"; }

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
