// Which x86-64 vector width the CPU backend's kernels (matrix products, attention, activations)
// run with: the best the CPU has, picked once; tests and benches may force a lesser one.
#pragma once

namespace kvmesh {

// avx512 and avx2 also imply FMA; scalar is plain C++ (what a compiler makes of it for the base
// architecture). The environment variable KVMESH_CPU_ISA=avx2|scalar selects a lesser one (debug aid).
enum class CpuIsa { scalar, avx2, avx512 };

CpuIsa cpu_isa();                      // the width in use
bool cpu_isa_supported(CpuIsa isa);    // whether this CPU (and OS) can run it
bool cpu_force_isa(CpuIsa isa);        // tests and benches only; false if unsupported
const char* cpu_isa_name(CpuIsa isa);  // "avx512", "avx2", "scalar"

// The one of a kernel's per-width variants (function pointers, usually) that cpu_isa() runs.
template <class T>
T for_cpu_isa(T avx512, T avx2, T scalar) {
  switch (cpu_isa()) {
    case CpuIsa::avx512:
      return avx512;
    case CpuIsa::avx2:
      return avx2;
    case CpuIsa::scalar:
      break;
  }
  return scalar;
}

}  // namespace kvmesh

// Function attributes for a kernel's per-width variants (empty off x86-64 GCC, where each variant
// is the plain one).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define KVMESH_TARGET_AVX512 __attribute__((target("avx512f,avx2,fma")))
#define KVMESH_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define KVMESH_TARGET_AVX512
#define KVMESH_TARGET_AVX2
#endif
