// CUDA and cuBLAS return codes as kvmesh Status: "what: cudaErrorXxx (message)".
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "common/status.h"

namespace kvmesh {

Status cuda_status(cudaError_t error, const char* what);
Status cublas_status(cublasStatus_t status, const char* what);

}  // namespace kvmesh

#define KVMESH_CUDA_RETURN_IF_ERROR(expr, what) KVMESH_RETURN_IF_ERROR(::kvmesh::cuda_status((expr), (what)))
