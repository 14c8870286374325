// FusedGemm: matrix products whose bias and activation run in cuBLASLt's epilogue, so one kernel
// writes the final values (fp32, or the bf16/f16 operand of the next product). Each shape's
// algorithm comes from cuBLASLt's heuristics once and is kept; a shape cuBLASLt offers no fused
// algorithm for is kept too, and the caller then runs the product and the epilogue apart. The bias
// is fp32; when the output is narrow and cuBLASLt takes no fp32 bias with it (its type table pairs
// a bf16/f16 output with a bias of that type), a rounded copy of the bias in the operand dtype is
// used instead, made once per bias outside any graph capture.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <tuple>
#include <utility>

#include "common/status.h"
#include "worker/cuda/kernels.h"

namespace kvmesh {

// What the epilogue applies to x @ w: + bias, then GELU in its tanh form (gelu_new) or ReLU.
enum class Epilogue { bias, gelu_tanh_bias, relu_bias };
const char* epilogue_name(Epilogue epilogue);

class FusedGemm {
 public:
  FusedGemm();
  ~FusedGemm();
  FusedGemm(const FusedGemm&) = delete;
  FusedGemm& operator=(const FusedGemm&) = delete;

  // A cuBLASLt handle with its own workspace, for products on `stream`.
  Status init(cudaStream_t stream);

  // y [n, out] = epilogue(x [n, in] @ w [in, out] + bias [out]); x and w in dtype (f16 or bf16),
  // bias fp32 (a weight: it must outlive this object), y in y_dtype (f32 or dtype), w in Conv1D
  // layout. *fused is false, and nothing ran, when cuBLASLt has no algorithm for this product.
  Status nn(const void* x, const void* w, KernelDType dtype, int64_t n, int64_t in, int64_t out,
            Epilogue epilogue, const float* bias, void* y, KernelDType y_dtype, bool* fused);

 private:
  struct Plan;
  // epilogue, dtypes, n, in, out, and the alignment (bytes, up to 256) of x, w, y and bias.
  using Key = std::tuple<int, int, int, int64_t, int64_t, int64_t, int, int, int, int>;
  Result<Plan*> plan(const Key& key, const float* bias);
  // The bias rounded to dtype in device memory, or null while `stream_` is being captured and no
  // copy exists yet (a copy made inside a capture would only be written at its replay).
  Result<const void*> narrow_bias(const float* bias, int64_t n, KernelDType dtype);

  cublasLtHandle_t handle_ = nullptr;
  cudaStream_t stream_ = nullptr;
  void* workspace_ = nullptr;
  std::map<Key, std::unique_ptr<Plan>> plans_;
  std::map<std::pair<const float*, int>, void*> narrow_biases_;  // (bias, dtype) -> device copy
  std::set<int> reported_unfused_;  // epilogues whose first shape without an algorithm was printed
};

}  // namespace kvmesh
