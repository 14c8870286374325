// CudaBackendOptions: the CUDA backend's run-time choices, carried by the worker's and the backend
// factory's options (in every build, with or without the CUDA backend).
#pragma once

namespace kvmesh {

// Choices of how the CUDA backend runs its ops, each on by default (off: for comparison, as the
// GPU benchmark does).
struct CudaBackendOptions {
  // A product's bias (and activation) in cuBLASLt's epilogue where it offers one, instead of a
  // kernel after the product.
  bool fused_epilogues = true;
  // Products of up to 8 rows (kFewRowsMax) (decode batches) by kvmesh's own kernel instead of cuBLAS.
  bool few_rows_kernel = true;
  // Each of kvmesh's kernels may start while the kernel before it still runs (programmatic
  // dependent launch, sm_90 on): the products load their first weights, then wait. Used only where
  // launch_overlap_works (worker/cuda/kernels.h) says the device runs it correctly; otherwise one line says why.
  bool overlap_launches = true;
};

}  // namespace kvmesh
