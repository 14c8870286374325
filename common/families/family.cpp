// The family registry, the tensor list a description implies, and the config.json field readers
// the family files share.
#include "common/families/family.h"

#include <charconv>
#include <climits>
#include <cstdlib>

namespace kvmesh {

const std::vector<const ModelFamily*>& model_families() {
  static const std::vector<const ModelFamily*> families = {&gpt2_family(), &opt_family(), &gpt_neo_family()};
  return families;
}

const ModelFamily* find_family_by_type(const std::string& model_type) {
  for (const ModelFamily* f : model_families())
    if (model_type == f->model_type) return f;
  return nullptr;
}

const ModelFamily* find_family_by_arch(const std::string& arch) {
  for (const ModelFamily* f : model_families())
    if (arch == f->arch) return f;
  return nullptr;
}

const ModelFamily& family_of(const ModelConfig& c) {
  const ModelFamily* f = find_family_by_type(c.model_type);
  KVMESH_CHECK(f != nullptr);
  return *f;
}

std::string strip_base_prefix(const std::string& name, const TensorNaming& n) {
  if (!n.base_prefix.empty() && name.rfind(n.base_prefix, 0) == 0) return name.substr(n.base_prefix.size());
  return name;
}

std::vector<ModelTensor> model_tensors(const ModelConfig& c) {
  const TensorNaming& n = family_of(c).names;
  const int64_t e = c.n_embd, inner = c.n_inner;
  std::vector<ModelTensor> t;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    if (!name.empty()) t.push_back({n.base_prefix + name, std::move(shape)});
  };
  // A matrix from `in` to `out` features in the family's layout.
  auto matrix = [&](const std::string& name, int64_t in, int64_t out) {
    add(name, n.linear_layout ? std::vector<int64_t>{out, in} : std::vector<int64_t>{in, out});
  };
  add(n.tok_embed, {c.vocab_size, e});
  add(n.pos_embed, {static_cast<int64_t>(c.n_positions) + c.position_offset, e});
  for (int i = 0; i < c.n_layer; ++i) {
    auto l = [&](const std::string& leaf) { return leaf.empty() ? leaf : n.layer(i, leaf); };
    add(l(n.ln1_w), {e});
    add(l(n.ln1_b), {e});
    if (!n.qkv_w.empty()) {
      matrix(l(n.qkv_w), e, 3 * e);
      if (c.qkv_bias) add(l(n.qkv_b), {3 * e});
    } else {
      for (const auto* pair : {&n.q_w, &n.k_w, &n.v_w}) matrix(l(*pair), e, e);
      if (c.qkv_bias)
        for (const auto* bias : {&n.q_b, &n.k_b, &n.v_b}) add(l(*bias), {e});
    }
    matrix(l(n.out_w), e, e);
    add(l(n.out_b), {e});
    add(l(n.ln2_w), {e});
    add(l(n.ln2_b), {e});
    matrix(l(n.fc1_w), e, inner);
    add(l(n.fc1_b), {inner});
    matrix(l(n.fc2_w), inner, e);
    add(l(n.fc2_b), {e});
  }
  add(n.final_norm_w, {e});
  add(n.final_norm_b, {e});
  if (!c.tied_head) t.push_back({n.head, {c.vocab_size, e}});  // the head model's own, unprefixed
  return t;
}

namespace config_fields {

std::string brief(const json& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

Status get_int(const json& j, const std::string& source, const char* field, bool required, int* out,
               bool* present) {
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

Status get_optional_int(const json& j, const std::string& source, const char* field, int null_value, int* out) {
  auto it = j.find(field);
  if (it != j.end() && it->is_null()) {
    *out = null_value;
    return Status::ok();
  }
  return get_int(j, source, field, /*required=*/false, out);
}

Status get_bool(const json& j, const std::string& source, const char* field, bool* out) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return Status::ok();
  if (!it->is_boolean())
    return invalid_argument(source + ": field '" + field + "' must be a boolean, got " + brief(*it));
  *out = it->get<bool>();
  return Status::ok();
}

Status get_float(const json& j, const std::string& source, const char* field, float* out) {
  auto it = j.find(field);
  if (it == j.end()) return Status::ok();
  if (!it->is_number()) return invalid_argument(source + ": field '" + field + "' must be a number, got " + brief(*it));
  *out = static_cast<float>(it->get<double>());
  return Status::ok();
}

Status get_activation(const json& j, const std::string& source, Activation fallback, Activation* out) {
  auto it = j.find("activation_function");
  if (it == j.end()) {
    *out = fallback;
    return Status::ok();
  }
  if (!it->is_string()) {
    return invalid_argument(source + ": field 'activation_function' must be a string, got " + brief(*it));
  }
  const std::string a = it->get<std::string>();
  if (a == "gelu_new" || a == "gelu_pytorch_tanh") *out = Activation::gelu_new;
  else if (a == "gelu") *out = Activation::gelu;
  else if (a == "gelu_fast") *out = Activation::gelu_fast;
  else if (a == "relu") *out = Activation::relu;
  else
    return invalid_argument(source + ": unknown activation_function '" + a +
                            "' (supported: gelu_new, gelu_pytorch_tanh, gelu, gelu_fast, relu)");
  return Status::ok();
}

Status expect_bool(const json& j, const std::string& source, const char* field, bool supported, const char* what) {
  bool v = supported;
  KVMESH_RETURN_IF_ERROR(get_bool(j, source, field, &v));
  if (v == supported) return Status::ok();
  return invalid_argument(source + ": " + field + " = " + (supported ? "false" : "true") +
                          " is not supported: " + what);
}

Status check_heads_divide(const std::string& source, const char* width_field, const char* heads_field,
                          const ModelConfig& c) {
  if (c.n_head <= 0 || c.n_embd <= 0 || c.n_embd % c.n_head == 0) return Status::ok();
  return invalid_argument(source + ": " + width_field + " (" + std::to_string(c.n_embd) + ") is not divisible by " +
                          heads_field + " (" + std::to_string(c.n_head) + ")");
}

double float_as_short_double(float f) {
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof(buf), f);
  return std::strtod(std::string(buf, res.ptr).c_str(), nullptr);
}

}  // namespace config_fields
}  // namespace kvmesh
