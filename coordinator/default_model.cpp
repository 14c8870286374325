// The default model: shape, cache location, and creation (random weights, written once, renamed).
#include "coordinator/default_model.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "common/checkpoint_maker.h"

namespace kvmesh {
namespace {

namespace fs = std::filesystem;

std::string shape_name(const ModelConfig& c) {
  return "gpt2-" + std::to_string(c.n_layer) + "l" + std::to_string(c.n_embd) + "d";
}

bool is_complete(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(dir / "config.json", ec) && fs::is_regular_file(dir / "model.safetensors", ec);
}

}  // namespace

ModelConfig default_model_config() {
  ModelConfig c;
  c.n_layer = 4;
  c.n_embd = 256;
  c.n_head = 4;
  c.n_inner = 4 * c.n_embd;
  c.n_positions = 1024;
  c.vocab_size = 50257;
  c.name = "default-" + shape_name(c);
  return c;
}

std::string default_model_dir() {
  const std::string name = "default-" + shape_name(default_model_config());
  if (const char* home = std::getenv("KVMESH_HOME"); home != nullptr && *home != '\0') {
    return (fs::path(home) / name).string();
  }
  const char* user_home = std::getenv("HOME");
  const fs::path base = user_home != nullptr && *user_home != '\0' ? fs::path(user_home) : fs::temp_directory_path();
  return (base / ".cache" / "kvmesh" / name).string();
}

Result<DefaultModel> ensure_default_model() {
  const fs::path dir = default_model_dir();
  if (is_complete(dir)) return DefaultModel{dir.string(), false};
  std::error_code ec;
  fs::create_directories(dir.parent_path(), ec);
  if (ec) return io_error("cannot create " + dir.parent_path().string() + ": " + ec.message());
  const fs::path tmp = dir.string() + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp, ec);
  CheckpointSpec spec;
  spec.out_dir = tmp.string();
  spec.config = default_model_config();
  spec.seed = 20240601;
  Status st = make_random_checkpoint(spec);
  if (!st.is_ok()) {
    fs::remove_all(tmp, ec);
    return st.with_context("writing the default model to " + tmp.string());
  }
  fs::rename(tmp, dir, ec);
  if (ec) {  // another process got there first, or the rename failed
    fs::remove_all(tmp, ec);
    if (is_complete(dir)) return DefaultModel{dir.string(), false};
    return io_error("cannot move the default model into " + dir.string());
  }
  return DefaultModel{dir.string(), true};
}

}  // namespace kvmesh
