// cpu_matmul entry points: takes the kernel family of cpu_isa() (cpu_isa.h) and splits output
// columns (never the reduction) over OpenMP threads, so thread count cannot change any result.
#include "worker/cpu/cpu_matmul.h"

#include <omp.h>

#include <algorithm>
#include <vector>

#include "worker/cpu/cpu_isa.h"
#include "worker/cpu/cpu_matmul_kernels.h"

namespace kvmesh {
namespace {

using matmul_detail::MatmulKernels;

constexpr int64_t kMinMacsPerThread = int64_t(1)
                                      << 16;  // below this a thread costs more than it saves
constexpr int64_t kNnColumnUnit = 32;         // nn thread ranges start at multiples of this
constexpr int64_t kNtRowUnit = 8;

// Per-thread scratch for packed blocks of w and rows of x; OpenMP pool threads keep theirs across
// calls.
float* thread_scratch() {
  thread_local std::vector<float> scratch(
      static_cast<size_t>(matmul_detail::kNnScratchFloats + matmul_detail::kNnXScratchFloats));
  return scratch.data();
}

MatmulKernels active_kernels() {
  return for_cpu_isa(&matmul_detail::avx512_kernels, &matmul_detail::avx2_kernels,
                     &matmul_detail::scalar_kernels)();
}

// Splits [0, n_cols) into contiguous ranges starting at multiples of unit, one per thread
// (schedule(static)), and calls f(begin, end) on each. macs_per_col sizes the thread count.
template <class F>
void parallel_column_ranges(int64_t n_cols, int64_t unit, int64_t macs_per_col, const F& f) {
  const int64_t n_units = (n_cols + unit - 1) / unit;
  const int64_t max_threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const int64_t by_work = n_cols * macs_per_col / kMinMacsPerThread;
  const int64_t n_parts = std::max<int64_t>(1, std::min({max_threads, n_units, by_work}));
  if (n_parts == 1) return f(int64_t(0), n_cols);
#pragma omp parallel for schedule(static) num_threads(static_cast <int>(n_parts))
  for (int64_t p = 0; p < n_parts; ++p) {
    const int64_t begin = n_units * p / n_parts * unit;
    const int64_t end = std::min(n_cols, n_units * (p + 1) / n_parts * unit);
    if (begin < end) f(begin, end);
  }
}

template <class W, class Range>
void run_nn(const float* x, int64_t n_rows, int64_t n_in, const W* w, int64_t n_out,
            const float* bias, float* y, Range nn_range) {
  if (n_rows <= 0 || n_out <= 0) return;
  if (n_in <= 0) {  // empty sum: y = bias or 0 (the kernels assume at least one k)
    for (int64_t t = 0; t < n_rows; ++t)
      for (int64_t n = 0; n < n_out; ++n) y[t * n_out + n] = bias != nullptr ? bias[n] : 0.0f;
    return;
  }
  const matmul_detail::NnArgsOf<W> args{x, n_rows, n_in, w, n_out, bias, y};
  parallel_column_ranges(n_out, kNnColumnUnit, n_rows * n_in, [&](int64_t begin, int64_t end) {
    nn_range(args, begin, end, thread_scratch());
  });
}

template <class W, class Range>
void run_nt(const float* x, int64_t n_rows, int64_t n_embd, const W* w, int64_t n_vocab, float* y,
            Range nt_range) {
  if (n_rows <= 0 || n_vocab <= 0) return;
  const matmul_detail::NtArgsOf<W> args{x, n_rows, n_embd, w, n_vocab, y};
  parallel_column_ranges(n_vocab, kNtRowUnit, n_rows * n_embd,
                         [&](int64_t begin, int64_t end) { nt_range(args, begin, end); });
}

}  // namespace

void matmul_nn(const float* x, int64_t n_rows, int64_t n_in, const float* w, int64_t n_out,
               const float* bias, float* y) {
  run_nn(x, n_rows, n_in, w, n_out, bias, y, active_kernels().nn_range);
}

void matmul_nt(const float* x, int64_t n_rows, int64_t n_embd, const float* w, int64_t n_vocab,
               float* y) {
  run_nt(x, n_rows, n_embd, w, n_vocab, y, active_kernels().nt_range);
}

void matmul_nn_bf16(const float* x, int64_t n_rows, int64_t n_in, const uint16_t* w, int64_t n_out,
                    const float* bias, float* y) {
  run_nn(x, n_rows, n_in, w, n_out, bias, y, active_kernels().nn_range_bf16);
}

void matmul_nt_bf16(const float* x, int64_t n_rows, int64_t n_embd, const uint16_t* w,
                    int64_t n_vocab, float* y) {
  run_nt(x, n_rows, n_embd, w, n_vocab, y, active_kernels().nt_range_bf16);
}

}  // namespace kvmesh
