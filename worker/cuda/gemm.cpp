// cuBLAS GemmEx calls in column-major terms: a row-major [r, c] matrix is a column-major [c, r] one,
// so y = x @ w becomes y^T = w^T x^T with the operands swapped.
#include "worker/cuda/gemm.h"

#include <climits>

#include "worker/cuda/cuda_check.h"

namespace kvmesh {
namespace {

constexpr size_t kWorkspaceBytes = 32ull << 20;

cudaDataType_t cuda_type(KernelDType dtype) {
  return dtype == KernelDType::f16 ? CUDA_R_16F : CUDA_R_16BF;
}

bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

}  // namespace

Gemm::~Gemm() {
  if (handle_ != nullptr) (void)cublasDestroy(handle_);
  if (workspace_ != nullptr) (void)cudaFree(workspace_);
}

Status Gemm::init(cudaStream_t stream) {
  KVMESH_RETURN_IF_ERROR(cublas_status(cublasCreate(&handle_), "cublasCreate"));
  KVMESH_RETURN_IF_ERROR(cublas_status(cublasSetStream(handle_, stream), "cublasSetStream"));
  KVMESH_CUDA_RETURN_IF_ERROR(cudaMalloc(&workspace_, kWorkspaceBytes), "cudaMalloc (cuBLAS workspace)");
  KVMESH_RETURN_IF_ERROR(
      cublas_status(cublasSetWorkspace(handle_, workspace_, kWorkspaceBytes), "cublasSetWorkspace"));
  return Status::ok();
}

Status Gemm::nn(const void* x, const void* w, KernelDType dtype, int64_t n, int64_t in, int64_t out,
                float* y) {
  if (n == 0 || out == 0) return Status::ok();
  if (!fits_int(n) || !fits_int(in) || !fits_int(out)) return invalid_argument("matrix too large for cuBLAS");
  const float alpha = 1.0f, beta = 0.0f;
  const cudaDataType_t t = cuda_type(dtype);
  // y^T [out, n] = w^T [out, in] @ x^T [in, n]
  return cublas_status(
      cublasGemmEx(handle_, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(out), static_cast<int>(n),
                   static_cast<int>(in), &alpha, w, t, static_cast<int>(out), x, t,
                   static_cast<int>(in), &beta, y, CUDA_R_32F, static_cast<int>(out),
                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
      "cublasGemmEx (linear)");
}

Status Gemm::nt(const void* x, const void* w, KernelDType dtype, int64_t n, int64_t e, int64_t v,
                float* y) {
  if (n == 0 || v == 0) return Status::ok();
  if (!fits_int(n) || !fits_int(e) || !fits_int(v)) return invalid_argument("matrix too large for cuBLAS");
  const float alpha = 1.0f, beta = 0.0f;
  const cudaDataType_t t = cuda_type(dtype);
  // y^T [v, n] = (w^T)^T [v, e] @ x^T [e, n]; w seen column-major is [e, v].
  return cublas_status(
      cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(v), static_cast<int>(n),
                   static_cast<int>(e), &alpha, w, t, static_cast<int>(e), x, t,
                   static_cast<int>(e), &beta, y, CUDA_R_32F, static_cast<int>(v),
                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
      "cublasGemmEx (LM head)");
}

}  // namespace kvmesh
