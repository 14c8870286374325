// gpu_products_bench: the decode products of the GPT-2 XL shape (QKV, attention out, fc1, fc2 and
// the LM head, bf16 weights) at 1, 2, 4 and 8 rows, each by the few-rows kernels (launched one
// after another, and launched to overlap the one before where the device allows it) and by cuBLAS,
// as microseconds per product and the GB/s of weights read, beside the device copy bandwidth.
// Each product runs 50 times back to back between two events, rotating over copies of its weights
// that together exceed the L2 cache several times, so the figures are reads from device memory.
// Usage: gpu_products_bench [repeats, default 50]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "common/tensor.h"
#include "worker/cuda/cuda_backend.h"
#include "worker/cuda/cuda_check.h"
#include "worker/cuda/device_bandwidth.h"
#include "worker/cuda/gemm.h"
#include "worker/cuda/kernels.h"

using namespace kvmesh;

namespace {

constexpr size_t kRotationBytes = 512ull << 20;  // weight copies per product: at least this much

struct Product {
  const char* name;
  int64_t k, n;
  bool lm_head;  // logits = x @ w^T with w [n, k]
};

// Device memory of one product's runs, freed when the product is done.
class DeviceArena {
 public:
  ~DeviceArena() {
    for (void* p : blocks_) (void)cudaFree(p);
  }
  void* alloc(size_t bytes) {
    void* p = nullptr;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
      std::fprintf(stderr, "gpu_products_bench: cudaMalloc of %zu bytes failed\n", bytes);
      std::exit(1);
    }
    blocks_.push_back(p);
    return p;
  }

 private:
  std::vector<void*> blocks_;
};

std::vector<uint16_t> random_bf16(size_t n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<uint16_t> host(n);
  for (auto& v : host) v = float_to_bf16(dist(rng));
  return host;
}

void* device_copy(DeviceArena& arena, const std::vector<uint16_t>& host) {
  void* d = arena.alloc(host.size() * sizeof(uint16_t));
  if (cudaMemcpy(d, host.data(), host.size() * sizeof(uint16_t), cudaMemcpyHostToDevice) != cudaSuccess) {
    std::fprintf(stderr, "gpu_products_bench: upload failed\n");
    std::exit(1);
  }
  return d;
}

bool ok(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return true;
  std::fprintf(stderr, "gpu_products_bench: %s: %s\n", what, cudaGetErrorString(e));
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 50;
  if (repeats < 1) {
    std::fprintf(stderr, "gpu_products_bench: usage: gpu_products_bench [repeats >= 1]\n");
    return 2;
  }
  if (cuda_device_count() == 0) {
    std::fprintf(stderr, "gpu_products_bench: no CUDA GPU usable (%s)\n", cuda_no_device_reason().c_str());
    return 1;
  }
  auto bw = measure_device_copy_gbs(0);
  if (!bw.is_ok()) {
    std::fprintf(stderr, "gpu_products_bench: %s\n", bw.status().to_string().c_str());
    return 1;
  }
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  if (!ok(cudaStreamCreate(&stream), "cudaStreamCreate") || !ok(cudaEventCreate(&start), "cudaEventCreate") ||
      !ok(cudaEventCreate(&stop), "cudaEventCreate"))
    return 1;
  Gemm gemm;
  if (Status s = gemm.init(stream); !s.is_ok()) {
    std::fprintf(stderr, "gpu_products_bench: %s\n", s.to_string().c_str());
    return 1;
  }
  const char* no_overlap = "";
  const bool overlap = launch_overlap_works(stream, &no_overlap);
  if (!overlap) std::fprintf(stderr, "gpu_products_bench: no overlapping launches: %s\n", no_overlap);
  DeviceArena counters;
  auto* arrivals = static_cast<int32_t*>(counters.alloc(kMaxSplitPairs * sizeof(int32_t)));
  if (!ok(cudaMemset(arrivals, 0, kMaxSplitPairs * sizeof(int32_t)), "cudaMemset")) return 1;

  const Product products[] = {{"QKV 1600x4800", 1600, 4800, false},
                              {"attention out 1600x1600", 1600, 1600, false},
                              {"fc1 1600x6400", 1600, 6400, false},
                              {"fc2 6400x1600", 6400, 1600, false},
                              {"LM head 1600x50257", 1600, 50257, true}};
  const int row_counts[] = {1, 2, 4, 8};
  std::printf("Decode products, bf16 weights, fp32 out; us per product (GB/s of weights read); device copy "
              "bandwidth %.0f GB/s\n\n| product | rows | few-rows kernel | few-rows kernel, overlapped | cuBLAS |\n"
              "|---|---|---|---|---|\n",
              *bw);
  int status = 0;
  for (const Product& p : products) {
    DeviceArena arena;
    const size_t weight_elems = static_cast<size_t>(p.k * p.n);
    const double weight_bytes = static_cast<double>(weight_elems) * 2.0;
    const int copies = static_cast<int>(std::max<size_t>(2, (kRotationBytes + weight_elems * 2 - 1) / (weight_elems * 2)));
    // The same random values in every copy: each is its own memory, which is what the rotation is for.
    const std::vector<uint16_t> w_host = random_bf16(weight_elems, 100, 0.02f);
    std::vector<void*> w;
    for (int c = 0; c < copies; ++c) w.push_back(device_copy(arena, w_host));
    void* x = device_copy(arena, random_bf16(static_cast<size_t>(kFewRowsMax * p.k), 7, 1.0f));
    auto* out = static_cast<float*>(arena.alloc(static_cast<size_t>(kFewRowsMax * p.n) * sizeof(float)));
    float* partial = nullptr;
    if (const int64_t floats = p.lm_head ? 0 : few_rows_partial_floats(kFewRowsMax, p.k, p.n); floats > 0)
      partial = static_cast<float*>(arena.alloc(static_cast<size_t>(floats) * sizeof(float)));
    for (int rows : row_counts) {
      // Microseconds per product of each kind (0 when it failed or does not serve the shape).
      // Kinds: the few-rows kernels launched one after another, the same overlapped, cuBLAS.
      double us[3] = {0.0, 0.0, 0.0};
      for (int kind = 0; kind < 3; ++kind) {
        const bool own = kind < 2;
        const KernelStream on(stream, kind == 1);
        if (kind == 1 && !overlap) continue;
        if (own && (p.lm_head ? !few_rows_lm_head_serves(rows, p.n, p.k, KernelDType::bf16, x, w[0])
                              : !few_rows_product_serves(rows, p.k, p.n, KernelDType::bf16, w[0])))
          continue;
        auto issue = [&](int i) -> bool {
          const void* wi = w[static_cast<size_t>(i) % w.size()];
          if (own && p.lm_head)
            return ok(launch_few_rows_lm_head(x, wi, KernelDType::bf16, rows, p.n, p.k, out, on), "few-rows LM head");
          if (own)
            return ok(launch_few_rows_product(x, wi, KernelDType::bf16, rows, p.k, p.n, nullptr, kNoActivation, out,
                                              KernelDType::f32, partial, arrivals, on),
                      "few-rows product");
          const Status s = p.lm_head ? gemm.nt(x, wi, KernelDType::bf16, rows, p.k, p.n, out)
                                     : gemm.nn(x, wi, KernelDType::bf16, rows, p.k, p.n, out);
          if (!s.is_ok()) std::fprintf(stderr, "gpu_products_bench: %s\n", s.to_string().c_str());
          return s.is_ok();
        };
        bool good = true;
        for (int i = 0; good && i < 3; ++i) good = issue(i);  // warm-up: module load, cuBLAS heuristics
        good = good && ok(cudaEventRecord(start, stream), "cudaEventRecord");
        for (int i = 0; good && i < repeats; ++i) good = issue(i);
        good = good && ok(cudaEventRecord(stop, stream), "cudaEventRecord") &&
               ok(cudaEventSynchronize(stop), "cudaEventSynchronize");
        float ms = 0.0f;
        good = good && ok(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
        if (good) us[kind] = 1e3 * ms / repeats;
        else status = 1;
      }
      std::printf("| %s | %d |", p.name, rows);
      for (double t : us) {
        if (t > 0.0)
          std::printf(" %.1f (%.0f GB/s) |", t, weight_bytes / (t * 1e-6) / 1e9);
        else
          std::printf(" - |");
      }
      std::printf("\n");
    }
  }
  (void)cudaEventDestroy(start);
  (void)cudaEventDestroy(stop);
  return status;
}
