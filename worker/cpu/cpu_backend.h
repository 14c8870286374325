// CPU backend: fp32 ops with deterministic matrix kernels (cpu_matmul) and OpenMP loops, weights in
// fp32 or bf16. The reference for every GPU op.
#pragma once

#include <memory>

#include "common/tensor.h"
#include "worker/backend.h"

namespace kvmesh {

// n_threads: threads for the op loops; 0 keeps OpenMP's default (all cores). weight_dtype: how
// matrix weights are kept: f32 (the reference) or bf16 (make_backend checks it).
std::unique_ptr<Backend> make_cpu_backend(int n_threads, DType weight_dtype = DType::f32);

}  // namespace kvmesh
