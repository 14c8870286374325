// Synthetic models: "synthetic:<shape>" names a model with the real layer shapes of a published
// GPT size and random weights generated on the fly from a seed, so any layout can run or be
// planned without a checkpoint.
#pragma once

#include <string>
#include <vector>

#include "common/config.h"
#include "common/status.h"

namespace kvmesh {

constexpr const char* kSyntheticPrefix = "synthetic:";

bool is_synthetic_model(const std::string& model);
// "synthetic:gpt3-175b" -> its ModelConfig. Shapes: the GPT-3 paper's table (gpt3-125m, gpt3-350m,
// gpt3-760m, gpt3-1.3b, gpt3-2.7b, gpt3-6.7b, gpt3-13b, gpt3-175b; 2048 positions) and the GPT-2
// family (gpt2-124m, gpt2-medium, gpt2-large, gpt2-xl), OPT (opt-125m, opt-1.3b, opt-66b, opt-175b)
// and GPT-Neo (gpt-neo-125m, gpt-neo-1.3b, gpt-neo-2.7b).
Result<ModelConfig> synthetic_model_config(const std::string& model);
std::vector<std::string> synthetic_model_names();

// The config of a model given on the command line: a synthetic name or a checkpoint directory.
Result<ModelConfig> resolve_model_config(const std::string& model);

}  // namespace kvmesh
