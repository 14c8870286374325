// Random checkpoint writer (any family, by the model description): deterministic per-tensor generators (splitmix64 + Box-Muller),
// streamed into model.safetensors, plus config.json and the GPT-2 tokenizer files.
#include "common/checkpoint_maker.h"

#include "common/data_dir.h"
#include "common/families/family.h"
#include "common/synthetic_models.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <thread>

#include <nlohmann/json.hpp>

namespace kvmesh {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kChunkElems = 1 << 18;  // elements per independent random stream

uint64_t splitmix64(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The stream of chunk `chunk` of tensor `tensor`: chunks are independent, so they can be generated
// in parallel and the bytes do not depend on the number of threads.
uint64_t chunk_state(uint64_t seed, size_t tensor, int64_t chunk) {
  uint64_t s = seed ^ 0x6A09E667F3BCC909ull;
  s = splitmix64(&s) ^ (static_cast<uint64_t>(tensor) << 32) ^ static_cast<uint64_t>(chunk);
  return splitmix64(&s);
}

// n normals (mean, std) by Box-Muller: one 64-bit draw gives two 24-bit uniforms and two values.
void fill_normal(uint64_t state, float mean, float std, float* out, int64_t n) {
  constexpr float kTwoPi = 2.0f * std::numbers::pi_v<float>;
  for (int64_t i = 0; i < n; i += 2) {
    const uint64_t x = splitmix64(&state);
    const float u1 = static_cast<float>((x >> 40) + 1) * 0x1.0p-24f;         // (0, 1]
    const float u2 = static_cast<float>((x >> 16) & 0xffffff) * 0x1.0p-24f;  // [0, 1)
    const float r = std * std::sqrt(-2.0f * std::log(u1));
    out[i] = mean + r * std::cos(kTwoPi * u2);
    if (i + 1 < n) out[i + 1] = mean + r * std::sin(kTwoPi * u2);
  }
}

struct InitRule {
  float mean;
  float std;
};

// Hugging Face's init, with LayerNorm parameters and biases perturbed so that tests exercise them.
InitRule init_rule(const std::string& name, const ModelConfig& c) {
  const TensorNaming& n = family_of(c).names;
  auto ends_with = [&](const std::string& s) {
    return !s.empty() && name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  const bool norm_weight = ends_with(n.ln1_w) || ends_with(n.ln2_w) || ends_with(n.final_norm_w);
  const bool norm_bias = ends_with(n.ln1_b) || ends_with(n.ln2_b) || ends_with(n.final_norm_b);
  if (norm_weight) return {1.0f, 0.05f};
  if (norm_bias) return {0.0f, 0.02f};
  if (ends_with(".bias")) return {0.0f, 0.01f};
  if (ends_with(n.out_w) || ends_with(n.fc2_w))  // residual projections
    return {0.0f, 0.02f / std::sqrt(2.0f * static_cast<float>(c.n_layer))};
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

// Generates and encodes chunks [chunk_begin, chunk_end) of one tensor into bytes, one thread each.
void make_chunks(const CheckpointSpec& spec, size_t tensor, const InitRule& rule, int64_t numel,
                 int64_t chunk_begin, int64_t chunk_end, std::vector<float>* values, std::vector<std::string>* bytes) {
  auto work = [&](int64_t c) {
    const int64_t at = c * kChunkElems;
    const int64_t n = std::min(kChunkElems, numel - at);
    float* v = values->data() + (c - chunk_begin) * kChunkElems;
    fill_normal(chunk_state(spec.seed, tensor, c), rule.mean, rule.std, v, n);
    encode(v, static_cast<size_t>(n), spec.dtype, &(*bytes)[c - chunk_begin]);
  };
  std::vector<std::thread> threads;
  for (int64_t c = chunk_begin + 1; c < chunk_end; ++c) threads.emplace_back(work, c);
  work(chunk_begin);
  for (std::thread& t : threads) t.join();
}

Status write_tensors(const CheckpointSpec& spec, const std::string& path) {
  const std::vector<TensorHeader> headers = model_tensor_headers(spec.config, spec.dtype);
  KVMESH_ASSIGN_OR_RETURN(auto writer, SafetensorsWriter::create(path, headers, {{"format", "pt"}}));
  const int64_t n_threads =
      spec.n_threads > 0 ? spec.n_threads : std::clamp<int64_t>(std::thread::hardware_concurrency(), 1, 8);
  std::vector<float> values(n_threads * kChunkElems);
  std::vector<std::string> bytes(n_threads);
  uint64_t done = 0;
  for (size_t t = 0; t < headers.size(); ++t) {
    const TensorHeader& h = headers[t];
    const InitRule rule = init_rule(h.name, spec.config);
    int64_t numel = 1;
    for (int64_t d : h.shape) numel *= d;
    const int64_t n_chunks = (numel + kChunkElems - 1) / kChunkElems;
    for (int64_t c = 0; c < n_chunks; c += n_threads) {
      const int64_t c_end = std::min(n_chunks, c + n_threads);
      make_chunks(spec, t, rule, numel, c, c_end, &values, &bytes);
      for (int64_t k = 0; k < c_end - c; ++k) {
        KVMESH_RETURN_IF_ERROR(writer->append(bytes[k].data(), bytes[k].size()));
        done += bytes[k].size();
      }
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
    const fs::path src = fs::path(shipped_gpt2_tokenizer_dir()) / file;
    std::error_code ec;
    if (!fs::exists(src, ec)) return not_found(src.string() + ": tokenizer file missing (set KVMESH_DATA_DIR to the directory holding gpt2/)");
    fs::copy_file(src, fs::path(out_dir) / file, fs::copy_options::overwrite_existing, ec);
    if (ec) return io_error(src.string() + ": cannot copy into " + out_dir + ": " + ec.message());
  }
  return Status::ok();
}

}  // namespace

Result<ModelConfig> preset_model_config(const std::string& preset) {
  const std::string known = "(gpt2-124m, gpt2-medium, gpt2-large, gpt2-xl, tiny, or a synthetic shape such as "
                            "opt-125m or gpt-neo-125m)";
  if (preset == "tiny") {
    ModelConfig c;
    c.name = preset;
    c.n_layer = 2;
    c.n_embd = 64;
    c.n_head = 4;
    c.n_inner = 256;
    c.n_positions = 128;
    c.vocab_size = 50257;
    return c;
  }
  const std::string shape = preset == "gpt2" ? "gpt2-124m" : preset;
  auto config = synthetic_model_config(shape);  // every family's published shapes live there
  if (!config.is_ok()) return invalid_argument("unknown preset '" + preset + "' " + known);
  config->name = preset;
  return config;
}

std::vector<TensorHeader> model_tensor_headers(const ModelConfig& c, DType dtype) {
  std::vector<TensorHeader> t;
  for (ModelTensor& m : model_tensors(c)) t.push_back({std::move(m.name), dtype, std::move(m.shape)});
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
