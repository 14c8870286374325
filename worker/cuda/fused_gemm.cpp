// FusedGemm: cuBLASLt descriptors, heuristics and launches of products with a bias/activation
// epilogue. In column-major terms (as gemm.cpp): y^T [out, n] = w^T [out, in] @ x^T [in, n], and
// the bias runs along D's rows, i.e. one value per output column of the row-major y.
#include "worker/cuda/fused_gemm.h"

#include <climits>
#include <cstdio>

#include "worker/cuda/cuda_check.h"

namespace kvmesh {
namespace {

constexpr size_t kWorkspaceBytes = 32ull << 20;

cudaDataType_t lt_type(KernelDType dtype) {
  switch (dtype) {
    case KernelDType::f16: return CUDA_R_16F;
    case KernelDType::bf16: return CUDA_R_16BF;
    default: return CUDA_R_32F;
  }
}

cublasLtEpilogue_t lt_epilogue(Epilogue epilogue) {
  switch (epilogue) {
    case Epilogue::gelu_tanh_bias: return CUBLASLT_EPILOGUE_GELU_BIAS;
    case Epilogue::relu_bias: return CUBLASLT_EPILOGUE_RELU_BIAS;
    default: return CUBLASLT_EPILOGUE_BIAS;
  }
}

// The largest power of two up to 256 that divides the address (cuBLASLt's alignment preference).
int alignment(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  int bytes = 1;
  while (bytes < 256 && a % (2 * bytes) == 0) bytes *= 2;
  return bytes;
}

const char* dtype_label(KernelDType dtype) {
  return dtype == KernelDType::f16 ? "f16" : dtype == KernelDType::bf16 ? "bf16" : "f32";
}

}  // namespace

const char* epilogue_name(Epilogue epilogue) {
  switch (epilogue) {
    case Epilogue::gelu_tanh_bias: return "bias + GELU (tanh)";
    case Epilogue::relu_bias: return "bias + ReLU";
    default: return "bias";
  }
}

// One shape's descriptors and algorithm; found is false when cuBLASLt had none to offer.
struct FusedGemm::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace_bytes = 0;
  bool found = false;
  bool narrow_bias = false;  // the epilogue reads the bias in the operand dtype

  ~Plan() {
    if (a != nullptr) (void)cublasLtMatrixLayoutDestroy(a);
    if (b != nullptr) (void)cublasLtMatrixLayoutDestroy(b);
    if (d != nullptr) (void)cublasLtMatrixLayoutDestroy(d);
    if (desc != nullptr) (void)cublasLtMatmulDescDestroy(desc);
  }
};

FusedGemm::FusedGemm() = default;

FusedGemm::~FusedGemm() {
  plans_.clear();
  for (auto& [key, copy] : narrow_biases_) (void)cudaFree(copy);
  if (handle_ != nullptr) (void)cublasLtDestroy(handle_);
  if (workspace_ != nullptr) (void)cudaFree(workspace_);
}

Status FusedGemm::init(cudaStream_t stream) {
  stream_ = stream;
  KVMESH_RETURN_IF_ERROR(cublas_status(cublasLtCreate(&handle_), "cublasLtCreate"));
  KVMESH_CUDA_RETURN_IF_ERROR(cudaMalloc(&workspace_, kWorkspaceBytes), "cudaMalloc (cuBLASLt workspace)");
  return Status::ok();
}

Result<FusedGemm::Plan*> FusedGemm::plan(const Key& key, const float* bias) {
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second.get();
  const auto [ep, dt, ydt, n, in, out, align_x, align_w, align_y, align_bias] = key;
  (void)align_bias;  // the heuristic reads the bias pointer itself
  const auto dtype = static_cast<KernelDType>(dt), y_dtype = static_cast<KernelDType>(ydt);
  auto owned = std::make_unique<Plan>();
  Plan& p = *owned;
  KVMESH_RETURN_IF_ERROR(cublas_status(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F),
                                       "cublasLtMatmulDescCreate"));
  const cublasLtEpilogue_t epilogue = lt_epilogue(static_cast<Epilogue>(ep));
  KVMESH_RETURN_IF_ERROR(cublas_status(
      cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)),
      "cuBLASLt epilogue"));
  KVMESH_RETURN_IF_ERROR(cublas_status(
      cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)),
      "cuBLASLt bias"));
  const cudaDataType_t t = lt_type(dtype);
  KVMESH_RETURN_IF_ERROR(cublas_status(
      cublasLtMatrixLayoutCreate(&p.a, t, static_cast<uint64_t>(out), static_cast<uint64_t>(in), out),
      "cuBLASLt layout (weights)"));
  KVMESH_RETURN_IF_ERROR(cublas_status(
      cublasLtMatrixLayoutCreate(&p.b, t, static_cast<uint64_t>(in), static_cast<uint64_t>(n), in),
      "cuBLASLt layout (activations)"));
  KVMESH_RETURN_IF_ERROR(cublas_status(
      cublasLtMatrixLayoutCreate(&p.d, lt_type(y_dtype), static_cast<uint64_t>(out), static_cast<uint64_t>(n), out),
      "cuBLASLt layout (output)"));

  cublasLtMatmulPreference_t pref = nullptr;
  KVMESH_RETURN_IF_ERROR(cublas_status(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate"));
  const uint64_t workspace = kWorkspaceBytes;
  const uint32_t aligns[4] = {static_cast<uint32_t>(align_w), static_cast<uint32_t>(align_x),
                              static_cast<uint32_t>(align_y), static_cast<uint32_t>(align_y)};
  const cublasLtMatmulPreferenceAttributes_t align_attrs[4] = {
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
  cublasStatus_t s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                          &workspace, sizeof(workspace));
  for (int i = 0; i < 4 && s == CUBLAS_STATUS_SUCCESS; ++i)
    s = cublasLtMatmulPreferenceSetAttribute(pref, align_attrs[i], &aligns[i], sizeof(aligns[i]));
  // One heuristic query with the bias in `bias_type`; true when it gave a usable algorithm.
  int n_results = 0;
  auto query = [&](cudaDataType_t bias_type) {
    if (s != CUBLAS_STATUS_SUCCESS) return false;
    s = cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type));
    cublasLtMatmulHeuristicResult_t result{};
    n_results = 0;
    if (s == CUBLAS_STATUS_SUCCESS)
      s = cublasLtMatmulAlgoGetHeuristic(handle_, p.desc, p.a, p.b, p.d, p.d, pref, 1, &result, &n_results);
    const bool usable = s == CUBLAS_STATUS_SUCCESS && n_results > 0 && result.state == CUBLAS_STATUS_SUCCESS &&
                        result.workspaceSize <= kWorkspaceBytes;
    if (usable) {
      p.algo = result.algo;
      p.workspace_bytes = result.workspaceSize;
    }
    return usable;
  };
  // No algorithm (or a configuration cuBLASLt refuses) is an answer, not an error: the product
  // then runs unfused. With a narrow output the bias may have to be in the output's type.
  p.found = query(CUDA_R_32F);
  if (!p.found && y_dtype != KernelDType::f32) {
    s = CUBLAS_STATUS_SUCCESS;
    p.found = p.narrow_bias = query(t);
  }
  (void)cublasLtMatmulPreferenceDestroy(pref);
  if (!p.found && reported_unfused_.insert(ep).second) {
    std::fprintf(stderr,
                 "kvmesh: cuBLASLt offers no fused %s product for [%lld, %lld] @ [%lld, %lld] %s -> %s (%s, %d "
                 "algorithms); such products run apart from their epilogue\n",
                 epilogue_name(static_cast<Epilogue>(ep)), static_cast<long long>(n), static_cast<long long>(in),
                 static_cast<long long>(in), static_cast<long long>(out), dtype_label(dtype), dtype_label(y_dtype),
                 cublasGetStatusName(s), n_results);
  }
  Plan* raw = owned.get();
  plans_.emplace(key, std::move(owned));
  return raw;
}

Result<const void*> FusedGemm::narrow_bias(const float* bias, int64_t n, KernelDType dtype) {
  const auto key = std::make_pair(bias, static_cast<int>(dtype));
  if (auto it = narrow_biases_.find(key); it != narrow_biases_.end()) return static_cast<const void*>(it->second);
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  KVMESH_CUDA_RETURN_IF_ERROR(cudaStreamIsCapturing(stream_, &capture), "cudaStreamIsCapturing");
  if (capture != cudaStreamCaptureStatusNone) return static_cast<const void*>(nullptr);
  void* copy = nullptr;
  KVMESH_CUDA_RETURN_IF_ERROR(cudaMalloc(&copy, static_cast<size_t>(n) * 2), "cudaMalloc (narrow bias)");
  narrow_biases_[key] = copy;
  KVMESH_CUDA_RETURN_IF_ERROR(launch_cast(bias, copy, dtype, n, stream_), "rounding a bias for cuBLASLt");
  return static_cast<const void*>(copy);
}

Status FusedGemm::nn(const void* x, const void* w, KernelDType dtype, int64_t n, int64_t in, int64_t out,
                     Epilogue epilogue, const float* bias, void* y, KernelDType y_dtype, bool* fused) {
  *fused = false;
  if (handle_ == nullptr) return internal_error("FusedGemm used before init");
  if (n == 0 || out == 0) {
    *fused = true;
    return Status::ok();
  }
  if (n > INT_MAX || in > INT_MAX || out > INT_MAX || dtype == KernelDType::f32 || bias == nullptr ||
      (y_dtype != KernelDType::f32 && y_dtype != dtype))
    return Status::ok();  // outside what the fused products take: the caller runs them apart
  const Key key{static_cast<int>(epilogue), static_cast<int>(dtype), static_cast<int>(y_dtype), n, in, out,
                alignment(x), alignment(w), alignment(y), alignment(bias)};
  KVMESH_ASSIGN_OR_RETURN(Plan * p, plan(key, bias));
  if (!p->found) return Status::ok();
  const void* epilogue_bias = bias;
  if (p->narrow_bias) {
    KVMESH_ASSIGN_OR_RETURN(epilogue_bias, narrow_bias(bias, out, dtype));
    if (epilogue_bias == nullptr) return Status::ok();  // no copy yet, inside a capture: run apart
  }
  KVMESH_RETURN_IF_ERROR(cublas_status(
      cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &epilogue_bias,
                                     sizeof(epilogue_bias)),
      "cuBLASLt bias"));
  const float alpha = 1.0f, beta = 0.0f;
  KVMESH_RETURN_IF_ERROR(cublas_status(cublasLtMatmul(handle_, p->desc, &alpha, w, p->a, x, p->b, &beta, y, p->d,
                                                      y, p->d, &p->algo, workspace_, p->workspace_bytes, stream_),
                                       "cublasLtMatmul (fused epilogue)"));
  *fused = true;
  return Status::ok();
}

}  // namespace kvmesh
