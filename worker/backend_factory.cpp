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

Result<DType> resolve_weight_dtype(DeviceKind device, std::optional<DType> requested) {
  const bool cpu = device == DeviceKind::cpu;
  const DType dtype = requested.value_or(cpu ? DType::f32 : DType::bf16);
  const bool ok = cpu ? dtype == DType::f32 || dtype == DType::bf16
                      : dtype == DType::bf16 || dtype == DType::f16;
  if (!ok)
    return invalid_argument(std::string("--dtype ") + dtype_name(dtype) + " is not available with --device " +
                            device_name(device) + " (" + (cpu ? "f32 or bf16" : "bf16 or f16") + ")");
  return dtype;
}

Result<DType> weight_dtype_from_flags(std::string_view device, std::string_view dtype) {
  DeviceKind kind;
  if (!parse_device(device, &kind)) return invalid_argument("--device: unknown device '" + std::string(device) + "'");
  if (dtype == "auto") return resolve_weight_dtype(kind, std::nullopt);
  DType parsed;
  if (!parse_dtype(dtype, &parsed)) return invalid_argument("--dtype: unknown dtype '" + std::string(dtype) + "'");
  return resolve_weight_dtype(kind, parsed);
}

Result<std::unique_ptr<Backend>> make_backend(const BackendOptions& options) {
  KVMESH_ASSIGN_OR_RETURN(const DType weight_dtype,
                          resolve_weight_dtype(options.device, options.weight_dtype));
  if (options.device == DeviceKind::cpu) return make_cpu_backend(options.n_threads, weight_dtype);
#ifdef KVMESH_HAVE_CUDA
  return make_cuda_backend(options.device_index, weight_dtype, options.cuda);
#else
  return unavailable("--device cuda: this kvmesh was built without the CUDA backend (rebuild with "
                     "nvcc available and -DKVMESH_CUDA=AUTO or ON)");
#endif
}

}  // namespace kvmesh
