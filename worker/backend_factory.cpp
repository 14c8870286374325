// Backend selection: the CPU backend always; the CUDA backend when the build has it.
#include "worker/backend_factory.h"

#include "worker/cpu/cpu_backend.h"
#ifdef KVMESH_HAVE_CUDA
#include "worker/cuda/cuda_backend.h"
#endif

namespace kvmesh {

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
