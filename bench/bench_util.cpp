// Shared helpers for bench programs: timing, memory bandwidth, model creation.
#include "bench_util.h"

#include <omp.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "common/checkpoint_maker.h"

namespace kvmesh::bench {

double measure_read_bandwidth_gbs(int n_threads, size_t bytes) {
  // Integer sums with independent lanes vectorise, so the loop is bound by memory, not adds.
  const size_t n = bytes / sizeof(uint64_t);
  std::vector<uint64_t> buf(n, 1);
  double best = 0.0;
  for (int rep = 0; rep < 4; ++rep) {
    const double t0 = now_seconds();
    uint64_t total = 0;
#pragma omp parallel for num_threads(n_threads) reduction(+ : total) schedule(static)
    for (size_t i = 0; i < n; ++i) total += buf[i];
    const double dt = now_seconds() - t0;
    if (total != n) std::printf("bandwidth check failed\n");
    best = std::max(best, static_cast<double>(bytes) / dt / 1e9);
  }
  return best;
}

std::string ensure_preset_model(const std::string& preset, const std::string& dir) {
  const std::string path = dir + "/" + preset;
  struct stat st {};
  if (stat((path + "/model.safetensors").c_str(), &st) == 0) return path;
  auto config = preset_model_config(preset);
  if (!config.is_ok()) return "";
  CheckpointSpec spec;
  spec.out_dir = path;
  spec.config = *config;
  spec.seed = 1;
  std::fprintf(stderr, "making %s checkpoint in %s ...\n", preset.c_str(), path.c_str());
  Status s = make_random_checkpoint(spec);
  if (!s.is_ok()) {
    std::fprintf(stderr, "%s\n", s.to_string().c_str());
    return "";
  }
  return path;
}

}  // namespace kvmesh::bench
