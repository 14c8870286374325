// Matrix products of the CUDA backend through cuBLAS: f16/bf16 operands, fp32 accumulation and
// fp32 output, row-major tensors with weights in Conv1D layout [in, out].
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"
#include "worker/cuda/kernels.h"

namespace kvmesh {

class Gemm {
 public:
  ~Gemm();
  // A handle bound to stream, with its own workspace (no allocation inside later calls).
  Status init(cudaStream_t stream);

  // y [n, out] = x [n, in] @ w [in, out]; x and w in dtype (f16 or bf16), y fp32.
  Status nn(const void* x, const void* w, KernelDType dtype, int64_t n, int64_t in, int64_t out,
            float* y);
  // y [n, v] = x [n, e] @ w [v, e]^T; x and w in dtype, y fp32 (the LM head).
  Status nt(const void* x, const void* w, KernelDType dtype, int64_t n, int64_t e, int64_t v, float* y);

 private:
  cublasHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
};

}  // namespace kvmesh
