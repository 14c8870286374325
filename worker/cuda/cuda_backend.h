// The CUDA backend: Backend ops on one GPU over device memory, own kernels (kernels.h), cuBLAS for
// the matrix products, f16/bf16 weights and KV pages with fp32 compute, one compute stream.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "common/tensor.h"
#include "worker/backend.h"
#include "worker/cuda_backend_options.h"

namespace kvmesh {

// device: GPU index, or -1 for this process's local MPI rank modulo the visible GPUs.
// weight_dtype: bf16 or f16. Errors: no usable GPU, or the device could not be set up.
Result<std::unique_ptr<Backend>> make_cuda_backend(int device, DType weight_dtype,
                                                   const CudaBackendOptions& options = {});

// GPUs visible to this process (0 when there is no driver or no device).
int cuda_device_count();
// Why cuda_device_count() is 0 ("no device visible", or the CUDA error, e.g. a driver older than
// the runtime); empty when a GPU is visible.
std::string cuda_no_device_reason();

}  // namespace kvmesh
