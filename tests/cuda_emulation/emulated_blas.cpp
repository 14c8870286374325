// The emulated cuBLAS and cuBLASLt calls of the CUDA backend: column-major products in fp32 (double
// accumulation) with their argument checks, cuBLASLt's bias / GELU / ReLU epilogues, and a
// heuristic whose bias types a test can choose (KVMESH_EMULATED_LT_BIAS).
#include <cublasLt.h>
#include <cublas_v2.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "emulated_device.h"
#include "emulated_runtime.h"

using cuemu::count_runtime_call;

// ---------------------------------------------------------------- cuBLAS / cuBLASLt
struct cublasContext {
  cudaStream_t stream = nullptr;
};
struct cublasLtContext {};

namespace {
float load(const void* p, cudaDataType t, size_t i) {
  switch (t) {
    case CUDA_R_16BF: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    case CUDA_R_16F: return __half2float(static_cast<const __half*>(p)[i]);
    case CUDA_R_32F: return static_cast<const float*>(p)[i];
    default: cuemu::fail("unsupported data type in a product");
  }
}
void store(void* p, cudaDataType t, size_t i, float v) {
  switch (t) {
    case CUDA_R_16BF: static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v); break;
    case CUDA_R_16F: static_cast<__half*>(p)[i] = __float2half_rn(v); break;
    case CUDA_R_32F: static_cast<float*>(p)[i] = v; break;
    default: cuemu::fail("unsupported data type in a product");
  }
}
size_t type_bytes(cudaDataType t) { return t == CUDA_R_32F ? 4 : 2; }

// Column-major C[m, n] = alpha op(A)[m, k] op(B)[k, n] + beta C, with bounds checks.
void gemm(bool ta, bool tb, int m, int n, int k, float alpha, const void* a, cudaDataType at, int64_t lda,
          const void* b, cudaDataType bt, int64_t ldb, float beta, const void* c, cudaDataType ct, int64_t ldc,
          void* d, cudaDataType dt, int64_t ldd, const std::function<float(int, float)>& epilogue) {
  const int64_t a_cols = ta ? m : k, b_cols = tb ? k : n;
  cuemu::check_device_range(a, type_bytes(at) * static_cast<size_t>(lda * (a_cols - 1) + (ta ? k : m)), "product A");
  cuemu::check_device_range(b, type_bytes(bt) * static_cast<size_t>(ldb * (b_cols - 1) + (tb ? n : k)), "product B");
  cuemu::check_device_range(d, type_bytes(dt) * static_cast<size_t>(ldd * (n - 1) + m), "product D");
  std::vector<float> out(static_cast<size_t>(m) * n);
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      double acc = 0.0;
      for (int l = 0; l < k; ++l) {
        const float x = load(a, at, ta ? l + i * lda : i + l * lda);
        const float y = load(b, bt, tb ? j + l * ldb : l + j * ldb);
        acc += static_cast<double>(x) * y;
      }
      float v = alpha * static_cast<float>(acc);
      if (beta != 0.0f) v += beta * load(c, ct, i + j * ldc);
      out[static_cast<size_t>(j) * m + i] = epilogue ? epilogue(i, v) : v;
    }
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) store(d, dt, i + j * ldd, out[static_cast<size_t>(j) * m + i]);
}

struct LtDesc {
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const void* bias = nullptr;
  cudaDataType bias_type = CUDA_R_32F;
  bool bias_type_set = false;
  cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
};
struct LtLayout {
  cudaDataType type;
  uint64_t rows, cols;
  int64_t ld;
};
std::map<const void*, LtDesc> lt_descs;
std::map<const void*, LtLayout> lt_layouts;
}  // namespace

extern "C" {

cublasStatus_t cublasCreate_v2(cublasHandle_t* h) {
  count_runtime_call(__func__);
  *h = new cublasContext();
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t h) {
  count_runtime_call(__func__);
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream_v2(cublasHandle_t h, cudaStream_t s) {
  count_runtime_call(__func__);
  h->stream = s;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t, void* w, size_t n) {
  count_runtime_call(__func__);
  cuemu::check_device_range(w, n, "cuBLAS workspace");
  return CUBLAS_STATUS_SUCCESS;
}
const char* cublasGetStatusName(cublasStatus_t s) {
  static thread_local std::string n;
  n = "CUBLAS_STATUS_" + std::to_string(static_cast<int>(s));
  return n.c_str();
}
const char* cublasGetStatusString(cublasStatus_t s) { return cublasGetStatusName(s); }

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void* alpha, const void* A, cudaDataType Atype, int lda, const void* B,
                            cudaDataType Btype, int ldb, const void* beta, void* C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t) {
  count_runtime_call(__func__);
  if (m < 0 || n < 0 || k < 0) return CUBLAS_STATUS_INVALID_VALUE;
  const bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
  if (lda < std::max(1, ta ? k : m) || ldb < std::max(1, tb ? n : k) || ldc < std::max(1, m))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (compute != CUBLAS_COMPUTE_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (Atype != Btype) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  cuemu::run_on_stream(h->stream, [=]() {
    gemm(ta, tb, m, n, k, al, A, Atype, lda, B, Btype, ldb, be, C, Ctype, ldc, C, Ctype, ldc, nullptr);
  });
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtCreate(cublasLtHandle_t* h) {
  count_runtime_call(__func__);
  *h = new cublasLtContext();
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
  count_runtime_call(__func__);
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* d, cublasComputeType_t compute, cudaDataType_t scale) {
  count_runtime_call(__func__);
  if (compute != CUBLAS_COMPUTE_32F || scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
  *d = new cublasLtMatmulDescOpaque_t();
  lt_descs[*d] = LtDesc{};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
  count_runtime_call(__func__);
  lt_descs.erase(d);
  delete d;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr,
                                              const void* buf, size_t size) {
  count_runtime_call(__func__);
  LtDesc& desc = lt_descs.at(d);
  switch (attr) {
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
      if (size != sizeof(cublasLtEpilogue_t)) return CUBLAS_STATUS_INVALID_VALUE;
      std::memcpy(&desc.epilogue, buf, size);
      break;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
      if (size != sizeof(void*)) return CUBLAS_STATUS_INVALID_VALUE;
      std::memcpy(&desc.bias, buf, size);
      break;
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE:
      if (size != sizeof(int32_t) && size != sizeof(cudaDataType)) return CUBLAS_STATUS_INVALID_VALUE;
      std::memcpy(&desc.bias_type, buf, sizeof(cudaDataType));
      desc.bias_type_set = true;
      break;
    case CUBLASLT_MATMUL_DESC_TRANSA: std::memcpy(&desc.ta, buf, sizeof(desc.ta)); break;
    case CUBLASLT_MATMUL_DESC_TRANSB: std::memcpy(&desc.tb, buf, sizeof(desc.tb)); break;
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* l, cudaDataType type, uint64_t rows,
                                          uint64_t cols, int64_t ld) {
  count_runtime_call(__func__);
  if (ld < static_cast<int64_t>(rows)) return CUBLAS_STATUS_INVALID_VALUE;
  *l = new cublasLtMatrixLayoutOpaque_t();
  lt_layouts[*l] = LtLayout{type, rows, cols, ld};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
  count_runtime_call(__func__);
  lt_layouts.erase(l);
  delete l;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* p) {
  count_runtime_call(__func__);
  *p = new cublasLtMatmulPreferenceOpaque_t();
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
  count_runtime_call(__func__);
  delete p;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t, cublasLtMatmulPreferenceAttributes_t,
                                                    const void*, size_t) {
  count_runtime_call(__func__);
  return CUBLAS_STATUS_SUCCESS;
}

// KVMESH_EMULATED_LT_BIAS: which bias types the emulated heuristic offers with a narrow output:
// "narrow" (default: the output's type only, as cuBLASLt's type table lists), "f32" (fp32 only),
// "any" (both) or "none" (no fused algorithm at all).
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a,
                                              cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                              cublasLtMatrixLayout_t dl, cublasLtMatmulPreference_t, int requested,
                                              cublasLtMatmulHeuristicResult_t* results, int* returned) {
  count_runtime_call(__func__);
  *returned = 0;
  if (requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
  const LtDesc& desc = lt_descs.at(d);
  const LtLayout &la = lt_layouts.at(a), &lb = lt_layouts.at(b), &ld = lt_layouts.at(dl);
  (void)c;
  const char* mode = std::getenv("KVMESH_EMULATED_LT_BIAS");
  const std::string m = mode ? mode : "narrow";
  const bool narrow_out = ld.type != CUDA_R_32F;
  bool ok = la.type == lb.type && m != "none";
  if (ok && narrow_out && desc.bias_type != ld.type && desc.bias_type != CUDA_R_32F) ok = false;
  if (ok && narrow_out && m == "narrow" && desc.bias_type != ld.type) ok = false;
  if (ok && narrow_out && m == "f32" && desc.bias_type != CUDA_R_32F) ok = false;
  if (!narrow_out && desc.bias_type != CUDA_R_32F) ok = false;
  if (!ok) return CUBLAS_STATUS_NOT_SUPPORTED;
  std::memset(&results[0], 0, sizeof(results[0]));
  results[0].state = CUBLAS_STATUS_SUCCESS;
  results[0].workspaceSize = 0;
  *returned = 1;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t d, const void* alpha, const void* A,
                              cublasLtMatrixLayout_t a, const void* B, cublasLtMatrixLayout_t b, const void* beta,
                              const void* C, cublasLtMatrixLayout_t c, void* D, cublasLtMatrixLayout_t dl,
                              const cublasLtMatmulAlgo_t*, void*, size_t, cudaStream_t stream) {
  count_runtime_call(__func__);
  const LtDesc desc = lt_descs.at(d);
  const LtLayout la = lt_layouts.at(a), lb = lt_layouts.at(b), lc = lt_layouts.at(c), ld = lt_layouts.at(dl);
  const bool ta = desc.ta != CUBLAS_OP_N, tb = desc.tb != CUBLAS_OP_N;
  const uint64_t m = ta ? la.cols : la.rows, k = ta ? la.rows : la.cols;
  const uint64_t kb = tb ? lb.cols : lb.rows, n = tb ? lb.rows : lb.cols;
  if (k != kb || ld.rows != m || ld.cols != n || lc.rows != m || lc.cols != n) return CUBLAS_STATUS_INVALID_VALUE;
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  const bool has_bias = desc.epilogue == CUBLASLT_EPILOGUE_BIAS || desc.epilogue == CUBLASLT_EPILOGUE_GELU_BIAS ||
                        desc.epilogue == CUBLASLT_EPILOGUE_RELU_BIAS;
  if (has_bias) {
    if (desc.bias == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    cuemu::check_device_range(desc.bias, type_bytes(desc.bias_type) * m, "cuBLASLt bias");
  }
  if (ld.type != CUDA_R_32F && desc.bias_type != ld.type && desc.bias_type != CUDA_R_32F)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  auto epilogue = [desc, has_bias](int row, float v) {
    if (has_bias) v += load(desc.bias, desc.bias_type, row);
    if (desc.epilogue == CUBLASLT_EPILOGUE_GELU_BIAS || desc.epilogue == CUBLASLT_EPILOGUE_GELU) {
      const float c = 0.7978845608028654f;
      v = 0.5f * v * (1.0f + std::tanh(c * (v + 0.044715f * v * v * v)));
    }
    if (desc.epilogue == CUBLASLT_EPILOGUE_RELU_BIAS || desc.epilogue == CUBLASLT_EPILOGUE_RELU) v = v > 0 ? v : 0;
    return v;
  };
  cuemu::run_on_stream(stream, [=]() {
    gemm(ta, tb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), al, A, la.type, la.ld, B, lb.type,
         lb.ld, be, C, lc.type, lc.ld, D, ld.type, ld.ld, epilogue);
  });
  return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"

