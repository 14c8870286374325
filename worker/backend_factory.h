// Picking the compute backend at run time: `--device cpu|cuda`, with one clear error when CUDA was
// not built or no GPU is usable.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "common/device_flags.h"
#include "common/tensor.h"
#include "worker/backend.h"
#include "worker/cuda_backend_options.h"

namespace kvmesh {

struct BackendOptions {
  DeviceKind device = DeviceKind::cpu;
  int n_threads = 0;                // CPU: compute threads (0 = all cores)
  // Storage of matrix weights; unset: the device's default (resolve_weight_dtype).
  std::optional<DType> weight_dtype;
  int device_index = -1;            // CUDA: GPU to use; -1 = this process's local MPI rank modulo
                                    // the visible GPUs (0 without MPI)
  CudaBackendOptions cuda;          // CUDA: how the backend runs its ops
};

// Whether this build carries the CUDA backend (and NCCL).
bool cuda_backend_built();
bool nccl_built();

Result<std::unique_ptr<Backend>> make_backend(const BackendOptions& options);

}  // namespace kvmesh
