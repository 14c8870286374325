// Internal interface between cpu_matmul.cpp (ISA choice, thread split) and the per-ISA kernel
// files cpu_matmul_{avx512,avx2,scalar}.cpp, which share their tile loops in cpu_matmul_tiles.inl.
#pragma once

#include <cstdint>

namespace kvmesh::matmul_detail {

// W: the weights' element, float or uint16_t (bf16 bits, widened exactly to fp32 as loaded).
template <class W>
struct NnArgsOf {
  const float* x;  // [n_rows, n_in]
  int64_t n_rows, n_in;
  const W* w;  // [n_in, n_out]
  int64_t n_out;
  const float* bias;  // [n_out] or null
  float* y;           // [n_rows, n_out]
};

template <class W>
struct NtArgsOf {
  const float* x;  // [n_rows, n_embd]
  int64_t n_rows, n_embd;
  const W* w;  // [n_vocab, n_embd]
  int64_t n_vocab;
  float* y;  // [n_rows, n_vocab]
};

using NnArgs = NnArgsOf<float>;
using NtArgs = NtArgsOf<float>;
using NnArgsBf16 = NnArgsOf<uint16_t>;
using NtArgsBf16 = NtArgsOf<uint16_t>;

// Floats of per-thread scratch that nn_range may use: packed blocks of w, then packed rows of x.
constexpr int64_t kNnScratchFloats = int64_t(256) * 256;
constexpr int64_t kNnXScratchFloats = int64_t(16) * 12 * (256 + 16);

struct MatmulKernels {
  // y[:, col_begin:col_end] of matmul_nn over all rows; col_begin is a multiple of 16;
  // scratch holds kNnScratchFloats + kNnXScratchFloats floats owned by the calling thread.
  void (*nn_range)(const NnArgs& a, int64_t col_begin, int64_t col_end, float* scratch);
  // y[:, v_begin:v_end] of matmul_nt over all rows.
  void (*nt_range)(const NtArgs& a, int64_t v_begin, int64_t v_end);
  // The same with bf16 weights: each element's chain is the fp32 one over the widened weights.
  void (*nn_range_bf16)(const NnArgsBf16& a, int64_t col_begin, int64_t col_end, float* scratch);
  void (*nt_range_bf16)(const NtArgsBf16& a, int64_t v_begin, int64_t v_end);
};

MatmulKernels avx512_kernels();
MatmulKernels avx2_kernels();
MatmulKernels scalar_kernels();

}  // namespace kvmesh::matmul_detail
