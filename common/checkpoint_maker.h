// Random checkpoints of any family in Hugging Face layout (config.json, model.safetensors, tokenizer
// files), written by kvmesh-ckpt and by tests that need a model of a given shape.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/safetensors.h"
#include "common/status.h"
#include "common/tensor.h"

namespace kvmesh {

struct CheckpointSpec {
  std::string out_dir;
  ModelConfig config;
  DType dtype = DType::f32;  // weight dtype: f32, f16 or bf16
  uint64_t seed = 1;
  bool copy_tokenizer = true;  // copy vocab.json + merges.txt from KVMESH_DATA_DIR/gpt2
  int n_threads = 0;           // generator threads, 0: hardware concurrency (at most 8); bytes do not depend on it
  // Optional, called after each tensor: (tensor name, data bytes written so far, total data bytes).
  std::function<void(const std::string& tensor, uint64_t done_bytes, uint64_t total_bytes)> progress;
};

// Named model shapes: "gpt2-124m" (alias "gpt2"), "gpt2-medium", "gpt2-large", "gpt2-xl", "tiny"
// (2 layers, 64 wide, 4 heads, 128 positions, GPT-2 vocabulary), and the other synthetic shapes
// (common/synthetic_models.h: opt-125m, gpt-neo-125m, ...), each with its family's choices.
Result<ModelConfig> preset_model_config(const std::string& preset);

// The tensors the family's ...ForCausalLM saves ("transformer.wte.weight", ...; no lm_head: it is
// tied to the token embedding), in the order kvmesh-ckpt writes them (common/families: model_tensors).
std::vector<TensorHeader> model_tensor_headers(const ModelConfig& config, DType dtype);

// Writes spec.out_dir/{model.safetensors, config.json[, vocab.json, merges.txt]}. Weights follow the
// Hugging Face init (normal(0, 0.02), residual projections scaled by 1/sqrt(2 n_layer)) with small
// random perturbations of LayerNorm parameters and biases; the same seed gives identical bytes.
// Streams tensor by tensor in chunks: memory stays a few MB whatever the model size.
Status make_random_checkpoint(const CheckpointSpec& spec);

}  // namespace kvmesh
