// CUDA and cuBLAS return codes as kvmesh Status.
#include "worker/cuda/cuda_check.h"

#include <string>

namespace kvmesh {

Status cuda_status(cudaError_t error, const char* what) {
  if (error == cudaSuccess) return Status::ok();
  const StatusCode code = error == cudaErrorMemoryAllocation ? StatusCode::resource_exhausted
                          : error == cudaErrorNoDevice || error == cudaErrorInsufficientDriver
                              ? StatusCode::unavailable
                              : StatusCode::internal;
  return Status(code, std::string(what) + ": " + cudaGetErrorName(error) + " (" +
                          cudaGetErrorString(error) + ")");
}

Status cublas_status(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return Status::ok();
  return internal_error(std::string(what) + ": " + cublasGetStatusName(status) + " (" +
                        cublasGetStatusString(status) + ")");
}

}  // namespace kvmesh
