// Random GPT-2 checkpoint writer: deterministic per-tensor generators (splitmix64 + Box-Muller),
// streamed into model.safetensors, plus config.json and the GPT-2 tokenizer files.
#include "common/checkpoint_maker.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numbers>

#include <nlohmann/json.hpp>

namespace kvmesh {
namespace {

namespace fs = std::filesystem;

constexpr size_t kChunkElems = 1 << 20;

// splitmix64 stream with Box-Muller normals (the second value of each pair is kept for the next call,
// so the sequence does not depend on how callers chunk it).
class NormalGenerator {
 public:
  explicit NormalGenerator(uint64_t state) : state_(state) {}
  float next(float mean, float std) {
    if (has_spare_) {
      has_spare_ = false;
      return mean + std * spare_;
    }
    const double u1 = (static_cast<double>(next_u64() >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
    const double u2 = static_cast<double>(next_u64() >> 11) * 0x1.0p-53;          // [0, 1)
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double theta = 2.0 * std::numbers::pi * u2;
    spare_ = static_cast<float>(r * std::sin(theta));
    has_spare_ = true;
    return mean + std * static_cast<float>(r * std::cos(theta));
  }

 private:
  uint64_t next_u64() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t state_;
  float spare_ = 0.0f;
  bool has_spare_ = false;
};

struct InitRule {
  float mean;
  float std;
};

// HF GPT-2 init, with LayerNorm parameters and biases perturbed so that tests exercise them.
InitRule init_rule(const std::string& name, const ModelConfig& c) {
  auto ends_with = [&](const char* suffix) {
    const std::string s(suffix);
    return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  const bool is_ln = name.find(".ln_") != std::string::npos;
  if (is_ln && ends_with(".weight")) return {1.0f, 0.05f};
  if (is_ln) return {0.0f, 0.02f};
  if (ends_with(".bias")) return {0.0f, 0.01f};
  if (ends_with("c_proj.weight")) return {0.0f, 0.02f / std::sqrt(2.0f * static_cast<float>(c.n_layer))};
  return {0.0f, 0.02f};
}

void encode(const float* src, size_t n, DType dtype, std::string* out) {
  out->resize(n * dtype_size(dtype));
  char* dst = out->data();
  if (dtype == DType::f32) {
    std::memcpy(dst, src, n * 4);
    return;
  }
  for (size_t i = 0; i < n; ++i) {
    const uint16_t v = dtype == DType::f16 ? float_to_half(src[i]) : float_to_bf16(src[i]);
    std::memcpy(dst + 2 * i, &v, 2);
  }
}

Status write_tensors(const CheckpointSpec& spec, const std::string& path) {
  const std::vector<TensorHeader> headers = gpt2_tensor_headers(spec.config, spec.dtype);
  KVMESH_ASSIGN_OR_RETURN(auto writer, SafetensorsWriter::create(path, headers, {{"format", "pt"}}));
  std::vector<float> values;
  std::string bytes;
  uint64_t done = 0;
  for (size_t t = 0; t < headers.size(); ++t) {
    const TensorHeader& h = headers[t];
    const InitRule rule = init_rule(h.name, spec.config);
    NormalGenerator gen(spec.seed * 0xD1B54A32D192ED03ull + (t + 1) * 0x9E3779B97F4A7C15ull);
    int64_t numel = 1;
    for (int64_t d : h.shape) numel *= d;
    for (int64_t at = 0; at < numel; at += kChunkElems) {
      const size_t n = static_cast<size_t>(std::min<int64_t>(kChunkElems, numel - at));
      values.resize(n);
      for (size_t i = 0; i < n; ++i) values[i] = gen.next(rule.mean, rule.std);
      encode(values.data(), n, spec.dtype, &bytes);
      KVMESH_RETURN_IF_ERROR(writer->append(bytes.data(), bytes.size()));
      done += bytes.size();
    }
    if (spec.progress) spec.progress(h.name, done, writer->data_bytes());
  }
  return writer->finish();
}

Status write_config(const CheckpointSpec& spec, const std::string& path) {
  auto j = nlohmann::ordered_json::parse(model_config_to_json(spec.config));
  const char* torch_dtype = spec.dtype == DType::f32 ? "float32" : spec.dtype == DType::f16 ? "float16" : "bfloat16";
  j["torch_dtype"] = torch_dtype;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << j.dump(2) << "\n";
  out.close();
  if (!out) return io_error(path + ": write failed");
  return Status::ok();
}

Status copy_tokenizer(const std::string& out_dir) {
  for (const char* file : {"vocab.json", "merges.txt"}) {
    const fs::path src = fs::path(KVMESH_DATA_DIR) / "gpt2" / file;
    std::error_code ec;
    if (!fs::exists(src, ec)) return not_found(src.string() + ": tokenizer file missing (KVMESH_DATA_DIR)");
    fs::copy_file(src, fs::path(out_dir) / file, fs::copy_options::overwrite_existing, ec);
    if (ec) return io_error(src.string() + ": cannot copy into " + out_dir + ": " + ec.message());
  }
  return Status::ok();
}

}  // namespace

Result<ModelConfig> preset_model_config(const std::string& preset) {
  struct Preset {
    const char* name;
    int n_layer, n_embd, n_head, n_positions;
  };
  static const Preset kPresets[] = {{"gpt2-124m", 12, 768, 12, 1024}, {"gpt2", 12, 768, 12, 1024},
                                    {"gpt2-medium", 24, 1024, 16, 1024}, {"gpt2-large", 36, 1280, 20, 1024},
                                    {"gpt2-xl", 48, 1600, 25, 1024},     {"tiny", 2, 64, 4, 128}};
  for (const Preset& p : kPresets) {
    if (preset != p.name) continue;
    ModelConfig c;
    c.name = preset;
    c.n_layer = p.n_layer;
    c.n_embd = p.n_embd;
    c.n_head = p.n_head;
    c.n_inner = 4 * p.n_embd;
    c.n_positions = p.n_positions;
    c.vocab_size = 50257;
    return c;
  }
  return invalid_argument("unknown preset '" + preset + "' (gpt2-124m, gpt2-medium, gpt2-large, gpt2-xl, tiny)");
}

std::vector<TensorHeader> gpt2_tensor_headers(const ModelConfig& c, DType dtype) {
  const int64_t e = c.n_embd;
  const int64_t inner = c.n_inner;
  std::vector<TensorHeader> t;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    t.push_back({"transformer." + name, dtype, std::move(shape)});
  };
  add("wte.weight", {c.vocab_size, e});
  add("wpe.weight", {c.n_positions, e});
  for (int i = 0; i < c.n_layer; ++i) {
    const std::string p = "h." + std::to_string(i) + ".";
    add(p + "ln_1.weight", {e});
    add(p + "ln_1.bias", {e});
    add(p + "attn.c_attn.weight", {e, 3 * e});
    add(p + "attn.c_attn.bias", {3 * e});
    add(p + "attn.c_proj.weight", {e, e});
    add(p + "attn.c_proj.bias", {e});
    add(p + "ln_2.weight", {e});
    add(p + "ln_2.bias", {e});
    add(p + "mlp.c_fc.weight", {e, inner});
    add(p + "mlp.c_fc.bias", {inner});
    add(p + "mlp.c_proj.weight", {inner, e});
    add(p + "mlp.c_proj.bias", {e});
  }
  add("ln_f.weight", {e});
  add("ln_f.bias", {e});
  return t;
}

Status make_random_checkpoint(const CheckpointSpec& spec) {
  Status valid = spec.config.validate();
  if (!valid.is_ok()) return valid.with_context("model config");
  if (spec.dtype != DType::f32 && spec.dtype != DType::f16 && spec.dtype != DType::bf16) {
    return invalid_argument(std::string("weight dtype must be f32, f16 or bf16, not ") + dtype_name(spec.dtype));
  }
  if (spec.out_dir.empty()) return invalid_argument("no output directory given");
  std::error_code ec;
  fs::create_directories(spec.out_dir, ec);
  if (ec) return io_error(spec.out_dir + ": cannot create directory: " + ec.message());
  KVMESH_RETURN_IF_ERROR(write_tensors(spec, (fs::path(spec.out_dir) / "model.safetensors").string()));
  KVMESH_RETURN_IF_ERROR(write_config(spec, (fs::path(spec.out_dir) / "config.json").string()));
  if (spec.copy_tokenizer) KVMESH_RETURN_IF_ERROR(copy_tokenizer(spec.out_dir));
  return Status::ok();
}

}  // namespace kvmesh
