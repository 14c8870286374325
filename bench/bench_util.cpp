// Shared helpers for bench programs: timing, memory bandwidth, model creation.
#include "bench_util.h"

#include <immintrin.h>
#include <omp.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "common/checkpoint_maker.h"
#include "worker/host_memory.h"

namespace kvmesh::bench {

namespace {

// Floats ahead of the loads that the sums prefetch (2 KiB, as the matrix kernels do for their
// weights): without it the probe reads slower than a decode step does.
constexpr size_t kPrefetchAhead = 512;

// Sums n floats with eight independent 16-lane accumulators, so the loop is bound by memory.
__attribute__((target("avx512f"))) float sum_avx512(const float* p, size_t n) {
  __m512 acc[8];
  for (auto& a : acc) a = _mm512_setzero_ps();
  for (size_t i = 0; i + 128 <= n; i += 128) {
    for (int k = 0; k < 8; ++k) __builtin_prefetch(p + i + kPrefetchAhead + 16 * k, 0, 2);
    for (int k = 0; k < 8; ++k) acc[k] = _mm512_add_ps(acc[k], _mm512_loadu_ps(p + i + 16 * k));
  }
  for (int k = 1; k < 8; ++k) acc[0] = _mm512_add_ps(acc[0], acc[k]);
  float lanes[16];
  _mm512_storeu_ps(lanes, acc[0]);
  float s = 0;
  for (float v : lanes) s += v;
  return s;
}

__attribute__((target("avx2"))) float sum_avx2(const float* p, size_t n) {
  __m256 acc[8];
  for (auto& a : acc) a = _mm256_setzero_ps();
  for (size_t i = 0; i + 64 <= n; i += 64) {
    for (int k = 0; k < 4; ++k) __builtin_prefetch(p + i + kPrefetchAhead + 16 * k, 0, 2);
    for (int k = 0; k < 8; ++k) acc[k] = _mm256_add_ps(acc[k], _mm256_loadu_ps(p + i + 8 * k));
  }
  for (int k = 1; k < 8; ++k) acc[0] = _mm256_add_ps(acc[0], acc[k]);
  float lanes[8];
  _mm256_storeu_ps(lanes, acc[0]);
  float s = 0;
  for (float v : lanes) s += v;
  return s;
}

float sum_scalar(const float* p, size_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (size_t i = 0; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += p[i + k];
  float s = 0;
  for (float v : acc) s += v;
  return s;
}

float sum_floats(const float* p, size_t n) {
  if (__builtin_cpu_supports("avx512f")) return sum_avx512(p, n);
  if (__builtin_cpu_supports("avx2")) return sum_avx2(p, n);
  return sum_scalar(p, n);
}

}  // namespace

double measure_read_bandwidth_gbs(int n_threads, size_t bytes) {
  // The memory the CPU backend keeps its weights in (huge pages where the system allows them), so
  // the roofline counts what a decode step gets.
  const size_t n = bytes / sizeof(float);
  auto block = alloc_host_memory(n * sizeof(float), "bandwidth probe");
  if (!block.is_ok()) {
    std::printf("bandwidth check: %s\n", block.status().message().c_str());
    return 0.0;
  }
  float* buf = block->f32();
  std::fill(buf, buf + n, 1.0f);
  double best = 0.0;
  for (int rep = 0; rep < 4; ++rep) {
    const double t0 = seconds_now();
    double total = 0;
#pragma omp parallel num_threads(n_threads) reduction(+ : total)
    {
      const size_t parts = static_cast<size_t>(omp_get_num_threads());
      const size_t chunk = (n / parts) / 128 * 128;
      const size_t begin = static_cast<size_t>(omp_get_thread_num()) * chunk;
      total += sum_floats(buf + begin, chunk);
    }
    const double dt = seconds_now() - t0;
    if (total <= 0) std::printf("bandwidth check failed\n");
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
