// Backend selection: the CPU backend always; the CUDA backend when the build has it.
#include "worker/backend_factory.h"

#include "worker/cpu/cpu_backend.h"
#ifdef KVMESH_HAVE_CUDA
#include "worker/cuda/cuda_backend.h"
#endif

namespace kvmesh {

bool parse_device(std::string_view name, DeviceKind* out) {
  if (name == "cpu") {
    *out = DeviceKind::cpu;
    return true;
  }
  if (name == "cuda") {
    *out = DeviceKind::cuda;
    return true;
  }
  return false;
}

const char* device_name(DeviceKind device) { return device == DeviceKind::cuda ? "cuda" : "cpu"; }

bool cuda_backend_built() {
#ifdef KVMESH_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

bool nccl_built() {
#ifdef KVMESH_HAVE_NCCL
  return true;
#else
  return false;
#endif
}

Result<std::unique_ptr<Backend>> make_backend(const BackendOptions& options) {
  if (options.device == DeviceKind::cpu) return make_cpu_backend(options.n_threads);
#ifdef KVMESH_HAVE_CUDA
  if (options.weight_dtype != DType::bf16 && options.weight_dtype != DType::f16)
    return invalid_argument(std::string("CUDA weights must be bf16 or f16, not ") +
                            dtype_name(options.weight_dtype));
  return make_cuda_backend(options.device_index, options.weight_dtype, options.fused_epilogues);
#else
  return unavailable("--device cuda: this kvmesh was built without the CUDA backend (rebuild with "
                     "nvcc available and -DKVMESH_CUDA=AUTO or ON)");
#endif
}

}  // namespace kvmesh
