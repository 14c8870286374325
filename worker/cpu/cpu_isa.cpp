// The CPU kernels' vector width: detected once from the CPU's features, or forced (tests, benches,
// KVMESH_CPU_ISA).
#include "worker/cpu/cpu_isa.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace kvmesh {
namespace {

CpuIsa best_isa() {
  if (const char* name = std::getenv("KVMESH_CPU_ISA")) {
    for (CpuIsa isa : {CpuIsa::avx512, CpuIsa::avx2, CpuIsa::scalar})
      if (std::strcmp(name, cpu_isa_name(isa)) == 0 && cpu_isa_supported(isa)) return isa;
  }
  if (cpu_isa_supported(CpuIsa::avx512)) return CpuIsa::avx512;
  if (cpu_isa_supported(CpuIsa::avx2)) return CpuIsa::avx2;
  return CpuIsa::scalar;
}

std::atomic<CpuIsa>& active_isa() {
  static std::atomic<CpuIsa> isa{best_isa()};
  return isa;
}

}  // namespace

CpuIsa cpu_isa() { return active_isa().load(std::memory_order_relaxed); }

bool cpu_isa_supported(CpuIsa isa) {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  switch (isa) {
    case CpuIsa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
             __builtin_cpu_supports("fma");
    case CpuIsa::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case CpuIsa::scalar:
      return true;
  }
  return false;
#else
  return isa == CpuIsa::scalar;
#endif
}

bool cpu_force_isa(CpuIsa isa) {
  if (!cpu_isa_supported(isa)) return false;
  active_isa().store(isa, std::memory_order_relaxed);
  return true;
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::avx512:
      return "avx512";
    case CpuIsa::avx2:
      return "avx2";
    case CpuIsa::scalar:
      return "scalar";
  }
  return "?";
}

}  // namespace kvmesh
