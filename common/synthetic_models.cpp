// Synthetic model shapes: the GPT-3 paper's table, the GPT-2 family, and published OPT and GPT-Neo
// configs.
#include "common/synthetic_models.h"

#include "common/families/family.h"

namespace kvmesh {
namespace {

struct Shape {
  const char* name;
  int n_layer, n_embd, n_head, n_positions;
  const ModelFamily& (*family)() = &gpt2_family;
  int n_inner = 0;           // 0: 4 * n_embd
  int vocab_size = 50257;
};

// GPT-3: Brown et al. 2020, table 2.1 (13B uses 5120 = 40 heads x 128, as released models do).
constexpr Shape kShapes[] = {
    {"gpt3-125m", 12, 768, 12, 2048},   {"gpt3-350m", 24, 1024, 16, 2048},
    {"gpt3-760m", 24, 1536, 16, 2048},  {"gpt3-1.3b", 24, 2048, 16, 2048},
    {"gpt3-2.7b", 32, 2560, 32, 2048},  {"gpt3-6.7b", 32, 4096, 32, 2048},
    {"gpt3-13b", 40, 5120, 40, 2048},   {"gpt3-175b", 96, 12288, 96, 2048},
    {"gpt2-124m", 12, 768, 12, 1024},   {"gpt2-medium", 24, 1024, 16, 1024},
    {"gpt2-large", 36, 1280, 20, 1024}, {"gpt2-xl", 48, 1600, 25, 1024},
    // OPT: Zhang et al. 2022, table 1 (config.json of facebook/opt-*).
    {"opt-125m", 12, 768, 12, 2048, &opt_family, 3072, 50272},
    {"opt-1.3b", 24, 2048, 32, 2048, &opt_family, 8192, 50272},
    {"opt-66b", 64, 9216, 72, 2048, &opt_family, 36864, 50272},
    {"opt-175b", 96, 12288, 96, 2048, &opt_family, 49152, 50272},
    // GPT-Neo: EleutherAI/gpt-neo-* config.json (global and local layers alternate, window 256).
    {"gpt-neo-125m", 12, 768, 12, 2048, &gpt_neo_family},
    {"gpt-neo-1.3b", 24, 2048, 16, 2048, &gpt_neo_family},
    {"gpt-neo-2.7b", 32, 2560, 20, 2048, &gpt_neo_family},
};

}  // namespace

bool is_synthetic_model(const std::string& model) { return model.rfind(kSyntheticPrefix, 0) == 0; }

Result<ModelConfig> synthetic_model_config(const std::string& model) {
  const std::string name = is_synthetic_model(model) ? model.substr(std::string(kSyntheticPrefix).size()) : model;
  for (const Shape& s : kShapes) {
    if (name != s.name) continue;
    ModelConfig c;
    c.name = model;
    c.n_layer = s.n_layer;
    c.n_embd = s.n_embd;
    c.n_head = s.n_head;
    c.n_inner = s.n_inner > 0 ? s.n_inner : 4 * s.n_embd;
    c.n_positions = s.n_positions;
    c.vocab_size = s.vocab_size;
    s.family().set_defaults(&c);
    return c;
  }
  std::string known;
  for (const auto& n : synthetic_model_names()) known += (known.empty() ? "" : ", ") + n;
  return invalid_argument("unknown synthetic model '" + name + "' (known: " + known + ")");
}

std::vector<std::string> synthetic_model_names() {
  std::vector<std::string> names;
  for (const Shape& s : kShapes) names.push_back(s.name);
  return names;
}

Result<ModelConfig> resolve_model_config(const std::string& model) {
  if (is_synthetic_model(model)) return synthetic_model_config(model);
  return load_model_config(model + "/config.json");
}

}  // namespace kvmesh
