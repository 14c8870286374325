// CPU backend: fp32 ops with deterministic matrix kernels (cpu_matmul) and OpenMP loops. The
// reference for every GPU op.
#pragma once

#include <memory>

#include "worker/backend.h"

namespace kvmesh {

// n_threads: threads for OpenBLAS and the op loops; 0 keeps the libraries' defaults (all cores).
std::unique_ptr<Backend> make_cpu_backend(int n_threads);

}  // namespace kvmesh
