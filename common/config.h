// Plain config structs (model, parallel layout, KV cache), parsed and validated once at startup.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"

namespace kvmesh {

enum class Activation { gelu_new, gelu, gelu_fast, relu };
const char* activation_name(Activation a);

// The model description: hyper-parameters (GPT-2's names) and the choices in which decoder families
// differ, filled from config.json by the family's file (common/families/). Every part of the engine
// reads these fields; none looks at the family itself. The defaults are GPT-2's.
struct ModelConfig {
  std::string name = "gpt2";     // served model name (directory base name by default)
  std::string model_type = "gpt2";  // config.json's model_type: selects the tensor names (families/)
  int n_layer = 0;
  int n_embd = 0;
  int n_head = 0;
  int n_inner = 0;               // MLP width; 4 * n_embd when config.json has null
  int n_positions = 0;
  int vocab_size = 0;
  float layer_norm_epsilon = 1e-5f;
  Activation activation = Activation::gelu_new;
  int bos_token_id = 50256;      // -1: none (null in config.json); 50256 when absent
  int eos_token_id = 50256;      // -1: none (null in config.json); 50256 when absent
  bool prepend_bos = false;      // the tokenizer puts bos_token_id before every prompt
  bool vocab_padded = false;     // rows past the tokenizer's ids pad the embedding (OPT: 50272 rows
                                 // for 50265 tokens); those ids decode to nothing
  int position_offset = 0;       // position p uses row p + position_offset of the position table
  bool scale_attention = true;   // scores are q.k / sqrt(head_dim); false: q.k unscaled
  bool qkv_bias = true;          // q, k and v projections have biases (else they are zero)
  bool tied_head = true;         // logits = x @ token embedding^T; false: a separate lm_head.weight
  std::vector<int> layer_window; // per layer: 0 attends to every earlier token, w > 0 to the last
                                 // w only; empty: every layer global

  int head_dim() const { return n_embd / n_head; }
  // The attention window of layer i (0: global).
  int window(int layer) const {
    return layer >= 0 && layer < static_cast<int>(layer_window.size()) ? layer_window[layer] : 0;
  }
  // The factor attention scores are multiplied by.
  float attention_scale() const;
  // Checks the fields are positive and consistent (n_embd divisible by n_head, ...).
  Status validate() const;
  // Number of parameters (the tensors of the checkpoint; a tied LM head counted once).
  int64_t n_params() const;
};

// Parses config.json text (model_type absent or "gpt2", "opt", "gpt_neo": common/families/) and
// validates it. Errors are invalid_argument naming `source` (the file) and the field.
Result<ModelConfig> parse_model_config(const std::string& json_text, const std::string& source);
// Reads and parses a config.json (not_found when missing); name = the directory's base name.
Result<ModelConfig> load_model_config(const std::string& path);
// config.json text for a ModelConfig, in its family's Hugging Face fields (what kvmesh-ckpt writes).
std::string model_config_to_json(const ModelConfig& config);

struct ParallelConfig {
  int tp = 1;
  int pp = 1;
  int world_size() const { return tp * pp; }
};

// KV cache pages and their three tiers. Budgets are bytes per rank; a tier's page count is the
// budget over one page of that rank's layers and heads, lowered to the minimum over all ranks.
struct CacheConfig {
  int block_size = 16;                 // tokens per page
  DType kv_dtype = DType::f32;         // f32, bf16, f16, or i8 (with a scale per token and head)
  int64_t device_bytes = 256ll << 20;  // device tier (GPU memory; RAM on the CPU backend)
  double device_fraction = 0.0;        // > 0: the device tier is this share of the device memory
                                       // free once the weights are placed, instead of device_bytes
  int64_t host_bytes = 0;              // host tier (pinned RAM on CUDA); 0 = none
  int64_t disk_bytes = 0;              // disk tier: one preallocated file per rank; 0 = none
  std::string disk_dir;                // where the disk files live (required when disk_bytes > 0)
  bool disk_persist = false;           // keep the disk file and rebuild its index at start
};

// The names --kv-dtype takes (kvmesh-serve and kvmesh-plan alike): f32 fp32 bf16 f16 fp16 i8 int8.
const std::vector<std::string>& kv_dtype_names();
// One of kv_dtype_names() -> its DType; false (out untouched) for any other text, case included.
bool parse_kv_dtype(std::string_view name, DType* out);

}  // namespace kvmesh
