// Where the shipped data files (the GPT-2 tokenizer) live: $KVMESH_DATA_DIR when set, else the
// directory the build was configured with, so an installed or moved binary can be pointed at them.
#pragma once

#include <cstdlib>
#include <string>

namespace kvmesh {

inline std::string shipped_data_dir() {
  const char* env = std::getenv("KVMESH_DATA_DIR");
  if (env != nullptr && env[0] != '\0') return env;
  return KVMESH_DATA_DIR;
}

// The GPT-2 vocab.json + merges.txt used for checkpoints that carry no tokenizer of their own.
inline std::string shipped_gpt2_tokenizer_dir() { return shipped_data_dir() + "/gpt2"; }

}  // namespace kvmesh
