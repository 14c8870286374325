// matmul_bench: cpu_matmul (deterministic kernels) beside OpenBLAS sgemv/sgemm on GPT-2-124M
// shapes, and the same kernels with bf16 weights, measured side by side in one run. T = 1 reports
// weight-streaming GB/s (decode is memory bound), larger T reports GFLOP/s. Weights rotate over
// copies larger than the caches, as in a real step.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "common/tensor.h"
#include "worker/cpu/cpu_isa.h"
#include "worker/cpu/cpu_matmul.h"
#include "worker/host_memory.h"

using namespace kvmesh;

namespace {

constexpr size_t kRotateBytes = size_t(600) << 20;  // total bytes of weight copies cycled through
constexpr double kMinSeconds = 0.2;                 // per timed sample
constexpr int kReps = 3;                            // samples per variant; best is kept

struct Case {
  const char* op;  // "nn": x[T,in] @ w[in,out]; "nt": x[T,in] @ w[out,in]^T (LM head)
  int64_t n_in, n_out;
};

// Weight copies live in the memory the CPU backend keeps its weights in (host_memory.h).
struct Buffers {
  std::vector<Buffer> w_copies;
  std::vector<Buffer> w_bf16_copies;  // the same weights rounded to bf16
  std::vector<float> x, y;
};

Buffer alloc_or_exit(size_t bytes) {
  auto block = alloc_host_memory(bytes, "weight copies");
  if (!block.is_ok()) {
    std::fprintf(stderr, "matmul_bench: %s\n", block.status().message().c_str());
    std::exit(1);
  }
  return std::move(block).value();
}

const uint16_t* bf16_of(const Buffer& b) { return static_cast<const uint16_t*>(b.data()); }

Buffers make_buffers(const Case& c, int64_t t) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  Buffers b;
  const size_t w_elems = static_cast<size_t>(c.n_in * c.n_out);
  const size_t n_copies = std::max<size_t>(1, kRotateBytes / (w_elems * sizeof(float)));
  for (size_t copy = 0; copy < n_copies; ++copy) {
    float* w = b.w_copies.emplace_back(alloc_or_exit(w_elems * sizeof(float))).f32();
    auto* w16 = static_cast<uint16_t*>(
        b.w_bf16_copies.emplace_back(alloc_or_exit(w_elems * sizeof(uint16_t))).data());
    for (size_t i = 0; i < w_elems; ++i) {
      w[i] = dist(rng);
      w16[i] = float_to_bf16(w[i]);
    }
  }
  b.x.resize(static_cast<size_t>(t * c.n_in));
  for (float& v : b.x) v = dist(rng);
  b.y.resize(static_cast<size_t>(t * c.n_out));
  return b;
}

void run_ours(const Case& c, int64_t t, Buffers& b, const float* w) {
  if (c.op[1] == 'n')
    matmul_nn(b.x.data(), t, c.n_in, w, c.n_out, nullptr, b.y.data());
  else
    matmul_nt(b.x.data(), t, c.n_in, w, c.n_out, b.y.data());
}

void run_ours_bf16(const Case& c, int64_t t, Buffers& b, const uint16_t* w) {
  if (c.op[1] == 'n')
    matmul_nn_bf16(b.x.data(), t, c.n_in, w, c.n_out, nullptr, b.y.data());
  else
    matmul_nt_bf16(b.x.data(), t, c.n_in, w, c.n_out, b.y.data());
}

// What cpu_backend did before cpu_matmul: sgemv for one row, sgemm otherwise.
void run_blas(const Case& c, int64_t t, Buffers& b, const float* w) {
  const int m = static_cast<int>(t), k = static_cast<int>(c.n_in), n = static_cast<int>(c.n_out);
  if (c.op[1] == 'n') {
    if (t == 1)
      cblas_sgemv(CblasRowMajor, CblasTrans, k, n, 1.0f, w, n, b.x.data(), 1, 0.0f, b.y.data(), 1);
    else
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, b.x.data(), k, w, n,
                  0.0f, b.y.data(), n);
  } else {
    if (t == 1)
      cblas_sgemv(CblasRowMajor, CblasNoTrans, n, k, 1.0f, w, k, b.x.data(), 1, 0.0f, b.y.data(),
                  1);
    else
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, b.x.data(), k, w, k, 0.0f,
                  b.y.data(), n);
  }
}

// Seconds per call: calls rotate through the weight copies (fn(i) uses copy i) until kMinSeconds
// have passed.
// The pause first lets the other library's spinning worker threads (OpenBLAS spins ~0.1 s after a
// call) go idle, so they do not steal a core from this sample.
template <class Fn>
double seconds_per_call(Buffers& b, const Fn& fn) {
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  fn(b.w_copies.size() - 1);  // warm-up (threads, page faults of y)
  size_t calls = 0;
  const double t0 = seconds_now();
  double dt = 0.0;
  do {
    fn(calls % b.w_copies.size());
    ++calls;
    dt = seconds_now() - t0;
  } while (dt < kMinSeconds || calls < 2);
  return dt / static_cast<double>(calls);
}

void bench_case(const Case& c, int64_t t, int threads) {
  Buffers b = make_buffers(c, t);
  omp_set_num_threads(threads);
  openblas_set_num_threads(threads);
  double ours = 1e30, blas = 1e30, bf16 = 1e30;
  for (int rep = 0; rep < kReps; ++rep) {  // interleaved, so all see the same machine load
    ours = std::min(ours, seconds_per_call(b, [&](size_t i) {
                      run_ours(c, t, b, b.w_copies[i].f32());
                    }));
    blas = std::min(blas, seconds_per_call(b, [&](size_t i) {
                      run_blas(c, t, b, b.w_copies[i].f32());
                    }));
    bf16 = std::min(bf16, seconds_per_call(b, [&](size_t i) {
                      run_ours_bf16(c, t, b, bf16_of(b.w_bf16_copies[i]));
                    }));
  }
  // T = 1: GB/s of the weights each variant reads (bf16 reads half the bytes); else GFLOP/s.
  const double weights = static_cast<double>(c.n_in * c.n_out);
  const double work = t == 1 ? weights * sizeof(float) / 1e9
                             : 2.0 * static_cast<double>(t) * weights / 1e9;
  const double work_bf16 = t == 1 ? weights * sizeof(uint16_t) / 1e9 : work;
  const std::string shape =
      std::string(c.op) + " " + std::to_string(c.n_in) + "x" + std::to_string(c.n_out);
  std::printf("%-14s %5lld %7d %10.1f %10.1f %7.2f %10.1f %7.2f  %s\n", shape.c_str(),
              static_cast<long long>(t), threads, work / ours, work / blas, blas / ours,
              work_bf16 / bf16, ours / bf16, t == 1 ? "GB/s" : "GFLOP/s");
  std::fflush(stdout);
}

}  // namespace

// Usage: matmul_bench [max_threads] [shape filter, e.g. "768x3072"] [rows, e.g. "8,16,32"]
int main(int argc, char** argv) {
  int max_threads = omp_get_num_procs();
  if (argc > 1) max_threads = std::max(1, std::atoi(argv[1]));
  const std::string filter = argc > 2 ? argv[2] : "";
  std::vector<int64_t> row_counts = {1, 16, 128, 512};
  if (argc > 3) {
    row_counts.clear();
    for (const char* p = argv[3]; *p != '\0';) {
      char* end = nullptr;
      const long t = std::strtol(p, &end, 10);
      if (end == p || t < 1) {
        std::fprintf(stderr, "matmul_bench: rows must be a comma-separated list of counts >= 1\n");
        return 2;
      }
      row_counts.push_back(t);
      p = *end == ',' ? end + 1 : end;
    }
  }
  std::printf("cpu_matmul isa: %s   OpenBLAS: %s (core %s)\n", cpu_isa_name(cpu_isa()),
              openblas_get_config(), openblas_get_corename());
  for (int threads = 1; threads <= max_threads; threads *= 2)
    std::printf("read bandwidth, %d thread(s): %.1f GB/s\n", threads,
                bench::measure_read_bandwidth_gbs(threads));
  std::printf("\nnn: x[T,in] @ w[in,out]; nt: LM head x[T,E] @ wte[V,E]^T.\n");
  std::printf("ratio = OpenBLAS time / ours (> 1: ours faster); bf16 = ours with bf16 weights,\n");
  std::printf("bf16 x = ours fp32 time / ours bf16 time\n");
  std::printf("%-14s %5s %7s %10s %10s %7s %10s %7s  %s\n", "shape", "T", "threads", "ours",
              "OpenBLAS", "ratio", "bf16", "bf16 x", "unit");
  const Case cases[] = {
      {"nn", 768, 2304}, {"nn", 768, 3072}, {"nn", 3072, 768}, {"nt", 768, 50257}};
  for (const Case& c : cases) {
    const std::string shape = std::to_string(c.n_in) + "x" + std::to_string(c.n_out);
    if (shape.find(filter) == std::string::npos) continue;
    for (int64_t t : row_counts)
      for (int threads = 1; threads <= max_threads; threads *= 2) bench_case(c, t, threads);
  }
  return 0;
}
