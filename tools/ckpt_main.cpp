// kvmesh-ckpt: writes a random checkpoint of a family (GPT-2, OPT, GPT-Neo) in Hugging Face layout
// (config.json, model.safetensors, vocab.json, merges.txt) for tests and benchmarks without a real model.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

#include <CLI/CLI.hpp>

#include "common/checkpoint_maker.h"
#include "common/cli_parse.h"
#include "common/families/family.h"

namespace {

struct Options {
  std::string out_dir;
  std::string preset = "gpt2-124m";
  std::string arch;
  int layers = 0, embd = 0, heads = 0, positions = 0, vocab = 0, inner = 0, window = 0;
  std::string dtype = "f32";
  uint64_t seed = 1;
  bool no_tokenizer = false;
};

// Preset first, then every option given on the command line overrides it.
kvmesh::Result<kvmesh::CheckpointSpec> build_spec(const CLI::App& app, const Options& o) {
  KVMESH_ASSIGN_OR_RETURN(kvmesh::ModelConfig c, kvmesh::preset_model_config(o.preset));
  auto given = [&](const char* name) { return app.get_option(name)->count() > 0; };
  if (given("--layers")) c.n_layer = o.layers;
  if (given("--embd")) c.n_embd = o.embd;
  if (given("--heads")) c.n_head = o.heads;
  if (given("--positions")) c.n_positions = o.positions;
  if (given("--vocab")) c.vocab_size = o.vocab;
  c.n_inner = (given("--inner") && o.inner != 0) ? o.inner : 4 * c.n_embd;
  if (given("--arch")) {
    const kvmesh::ModelFamily* family = kvmesh::find_family_by_arch(o.arch);
    if (family == nullptr) return kvmesh::invalid_argument("--arch must be gpt2, opt or gpt-neo, not '" + o.arch + "'");
    family->set_defaults(&c);
  } else if (given("--layers")) {
    kvmesh::family_of(c).set_defaults(&c);  // per-layer choices follow the new layer count
  }
  if (given("--window")) {
    if (o.window < 1) return kvmesh::invalid_argument("--window must be at least 1");
    if (c.layer_window.empty()) return kvmesh::invalid_argument("--window: the model has no local attention layers");
    for (int& w : c.layer_window) w = w > 0 ? o.window : 0;
  }
  if (c.vocab_size > 0 && c.vocab_size <= c.eos_token_id) {  // a vocabulary cut below <|endoftext|>
    c.bos_token_id = c.vocab_size - 1;
    c.eos_token_id = c.vocab_size - 1;
  }
  c.name = std::filesystem::path(o.out_dir).filename().string();
  if (c.name.empty()) c.name = std::filesystem::path(o.out_dir).parent_path().filename().string();
  KVMESH_RETURN_IF_ERROR(c.validate());
  kvmesh::CheckpointSpec spec;
  spec.out_dir = o.out_dir;
  spec.config = c;
  spec.seed = o.seed;
  spec.copy_tokenizer = !o.no_tokenizer;
  if (!kvmesh::parse_dtype(o.dtype, &spec.dtype) ||
      (spec.dtype != kvmesh::DType::f32 && spec.dtype != kvmesh::DType::f16 && spec.dtype != kvmesh::DType::bf16)) {
    return kvmesh::invalid_argument("--dtype must be f32, f16 or bf16, not '" + o.dtype + "'");
  }
  return spec;
}

// Progress on stderr: on a terminal one line redrawn in place after every tensor; anywhere else (a
// log file, a pipe) a plain line each time another 10 % is written, so at most ten lines.
class ProgressPrinter {
 public:
  explicit ProgressPrinter(bool tty) : tty_(tty) {}

  void update(const std::string& tensor, uint64_t done, uint64_t total) {
    const double mb = 1.0 / (1 << 20);
    const double percent = total ? 100.0 * static_cast<double>(done) / static_cast<double>(total) : 100.0;
    if (tty_) {
      std::fprintf(stderr, "\rkvmesh-ckpt: %5.1f%% (%.0f / %.0f MB) %-40s", percent, done * mb, total * mb,
                   tensor.c_str());
      drawn_ = true;
    } else if (percent >= next_step_) {
      std::fprintf(stderr, "kvmesh-ckpt: %.0f%% (%.0f / %.0f MB)\n", std::floor(percent), done * mb, total * mb);
      while (next_step_ <= percent) next_step_ += 10.0;
    }
    std::fflush(stderr);
  }

  // Ends the redrawn line, so that what follows starts on its own.
  void finish() {
    if (drawn_) std::fprintf(stderr, "\n");
    drawn_ = false;
  }

 private:
  bool tty_;
  bool drawn_ = false;
  double next_step_ = 10.0;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kvmesh-ckpt: write a random GPT-2, OPT or GPT-Neo checkpoint (Hugging Face layout)"};
  Options o;
  app.add_option("--out", o.out_dir, "output directory (created if missing)")->required();
  app.add_option("--preset", o.preset,
                 "gpt2-124m, gpt2-medium, gpt2-large, gpt2-xl, tiny, or a synthetic shape (opt-125m, gpt-neo-125m, ...)")
      ->capture_default_str();
  app.add_option("--arch", o.arch, "model family: gpt2, opt or gpt-neo (default: the preset's)");
  app.add_option("--window", o.window, "gpt-neo: window_size of the local attention layers (default 256)");
  app.add_option("--layers", o.layers, "n_layer (default: the preset's)");
  app.add_option("--embd", o.embd, "n_embd");
  app.add_option("--heads", o.heads, "n_head (must divide n_embd)");
  app.add_option("--positions", o.positions, "n_positions (context length)");
  app.add_option("--vocab", o.vocab, "vocab_size");
  app.add_option("--inner", o.inner, "MLP width n_inner (0: 4 * n_embd)");
  app.add_option("--dtype", o.dtype, "weight dtype: f32, f16 or bf16")->capture_default_str();
  app.add_option("--seed", o.seed, "random seed (same seed, same bytes)")->capture_default_str();
  app.add_flag("--no-tokenizer", o.no_tokenizer, "do not copy vocab.json and merges.txt");
  if (const kvmesh::CliOutcome parsed = kvmesh::parse_cli(app, argc, argv, "kvmesh-ckpt"); parsed.exit_code >= 0) {
    std::fprintf(parsed.exit_code == 0 ? stdout : stderr, "%s\n", parsed.message.c_str());
    return parsed.exit_code == 0 ? 0 : 1;
  }

  auto spec = build_spec(app, o);
  if (!spec.is_ok()) {
    std::fprintf(stderr, "kvmesh-ckpt: error: %s\n", spec.status().message().c_str());
    return 1;
  }
  ProgressPrinter progress(isatty(STDERR_FILENO) != 0);
  spec->progress = [&progress](const std::string& tensor, uint64_t done, uint64_t total) {
    progress.update(tensor, done, total);
  };
  const auto start = std::chrono::steady_clock::now();
  kvmesh::Status st = kvmesh::make_random_checkpoint(*spec);
  progress.finish();
  if (!st.is_ok()) {
    std::fprintf(stderr, "kvmesh-ckpt: error: %s\n", st.message().c_str());
    return 1;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto& c = spec->config;
  std::fprintf(stderr, "kvmesh-ckpt: wrote %s: %d layers, n_embd %d, %d heads, %.1fM parameters (%s) in %.1f s\n",
               o.out_dir.c_str(), c.n_layer, c.n_embd, c.n_head, c.n_params() / 1e6,
               kvmesh::dtype_name(spec->dtype), secs);
  return 0;
}
