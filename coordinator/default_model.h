// The model kvmesh-serve runs when --model is absent: a small random GPT-2 (GPT-2 tokenizer) made
// once with make_random_checkpoint in $KVMESH_HOME/default-gpt2-<shape> (or
// ~/.cache/kvmesh/default-gpt2-<shape>), and reused from there.
#pragma once

#include <string>

#include "common/config.h"
#include "common/status.h"

namespace kvmesh {

// The default model's shape: 4 layers, 256 wide, 4 heads, 1024 positions, GPT-2 vocabulary.
ModelConfig default_model_config();
// "$KVMESH_HOME/default-gpt2-4l256d", or under ~/.cache/kvmesh when KVMESH_HOME is not set.
std::string default_model_dir();

struct DefaultModel {
  std::string dir;
  bool created = false;  // made now (false: found from an earlier run)
};

// Returns the default model's directory, writing the checkpoint first when it is not there yet.
// Writes into a temporary directory and renames it, so concurrent starts never see half a model.
Result<DefaultModel> ensure_default_model();

}  // namespace kvmesh
