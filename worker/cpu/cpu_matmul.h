// Deterministic fp32 matrix products of the CPU backend (linear layers and the LM head): each
// output element is accumulated in one fixed order, so a row's result never depends on how many
// rows share the call, how they are tiled or how many OpenMP threads run it.
#pragma once

#include <cstdint>

namespace kvmesh {

// y[t, n] = bias[n] + sum_k x[t, k] * w[k, n], k ascending, one FMA per term (starting from bias or
// 0). x [n_rows, n_in], w [n_in, n_out] (Conv1D layout), bias [n_out] or null, y [n_rows, n_out];
// row-major.
void matmul_nn(const float* x, int64_t n_rows, int64_t n_in, const float* w, int64_t n_out,
               const float* bias, float* y);

// y[r, v] = sum_e x[r, e] * w[v, e]: 16 lane sums over e (lane = e % 16, e ascending), then a fixed
// pairwise tree (lane i + lane i+8, then +4, +2, +1).
// x [n_rows, n_embd], w [n_vocab, n_embd], y [n_rows, n_vocab]; row-major.
void matmul_nt(const float* x, int64_t n_rows, int64_t n_embd, const float* w, int64_t n_vocab,
               float* y);

// The same products with bf16 weights (the raw bits, uint16_t): each weight is widened to fp32
// exactly as it is loaded, so the result equals matmul_nn / matmul_nt of the widened weights bit
// for bit, at half the weight traffic.
void matmul_nn_bf16(const float* x, int64_t n_rows, int64_t n_in, const uint16_t* w, int64_t n_out,
                    const float* bias, float* y);
void matmul_nt_bf16(const float* x, int64_t n_rows, int64_t n_embd, const uint16_t* w,
                    int64_t n_vocab, float* y);

// Kernel families, one per cpu_isa() (cpu_isa.h). avx512 and avx2 use FMA and give bit-identical
// results; scalar (no FMA) rounds the product separately, so it differs in the last bits.

}  // namespace kvmesh
