// Picking the compute backend at run time: `--device cpu|cuda`, with one clear error when CUDA was
// not built or no GPU is usable.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "common/tensor.h"
#include "worker/backend.h"
#include "worker/cuda_backend_options.h"

namespace kvmesh {

enum class DeviceKind { cpu, cuda };

struct BackendOptions {
  DeviceKind device = DeviceKind::cpu;
  int n_threads = 0;                // CPU: compute threads (0 = all cores)
  // Storage of matrix weights; unset: the device's default (resolve_weight_dtype).
  std::optional<DType> weight_dtype;
  int device_index = -1;            // CUDA: GPU to use; -1 = this process's local MPI rank modulo
                                    // the visible GPUs (0 without MPI)
  CudaBackendOptions cuda;          // CUDA: how the backend runs its ops
};

// "cpu" / "cuda"; false for anything else.
bool parse_device(std::string_view name, DeviceKind* out);
const char* device_name(DeviceKind device);
// Whether this build carries the CUDA backend (and NCCL).
bool cuda_backend_built();
bool nccl_built();

// The dtype a device keeps matrix weights in: `requested`, or by default f32 on the CPU (the
// reference) and bf16 on CUDA. CPU takes f32 or bf16, CUDA bf16 or f16; anything else is an error
// naming the flag.
Result<DType> resolve_weight_dtype(DeviceKind device, std::optional<DType> requested);
// `--device` and `--dtype` ("auto" or a dtype name) as given on a command line, checked together.
Result<DType> weight_dtype_from_flags(std::string_view device, std::string_view dtype);

Result<std::unique_ptr<Backend>> make_backend(const BackendOptions& options);

}  // namespace kvmesh
