// CudaBackend's matrix products: linear layers (decode batches of up to kFewRowsMax rows by the
// few-rows kernel with the bias and activation in it; larger ones through cuBLAS, the bias and
// activation in a cuBLASLt epilogue where it offers one), the LM head (a few rows by the few-rows
// LM head kernel, more through cuBLAS), and the narrowing of fp32 activations into their operands.
#include <string>

#include "worker/cuda/cuda_backend_impl.h"

namespace kvmesh {
namespace {

// The cuBLASLt epilogue that computes act(v + bias): its GELU is the tanh form, which is gelu_new
// and gelu_fast (one function written two ways); erf GELU has none.
bool fused_epilogue(Activation act, Epilogue* out) {
  switch (act) {
    case Activation::gelu_new:
    case Activation::gelu_fast: *out = Epilogue::gelu_tanh_bias; return true;
    case Activation::relu: *out = Epilogue::relu_bias; return true;
    default: return false;
  }
}

}  // namespace

const void* CudaBackend::narrow_operand(const TensorView& x, KernelDType wd) {
  KernelDType xd;
  if (!activation_dtype(x, &xd)) return nullptr;
  if (xd == wd) return x.data;
  const int64_t n = x.numel();
  void* xn = scratch(narrow_, static_cast<size_t>(n) * 2);
  if (xn == nullptr) return nullptr;
  if (!check(launch_cast(x.f32(), xn, wd, n, on_stream()), "narrowing activations")) return nullptr;
  return xn;
}

bool CudaBackend::weight_operand_dtype(const TensorView& w, const char* what, KernelDType* wd) {
  auto dtype = kernel_dtype(w.dtype);
  if (!note(dtype.status())) return false;
  if (*dtype == KernelDType::f32)
    return note(invalid_argument(std::string(what) + " takes f16 or bf16 weights"));
  *wd = *dtype;
  return true;
}

bool CudaBackend::product_shapes(const TensorView& x, const TensorView& w, const TensorView* b,
                                 const TensorView& out, bool transposed, const char* what) {
  const int64_t k = transposed ? w.dim(1) : w.dim(0), cols = transposed ? w.dim(0) : w.dim(1);
  const bool fits = x.rank == 2 && w.rank == 2 && out.rank == 2 && x.dim(1) == k && out.dim(0) == x.dim(0) &&
                    out.dim(1) == cols && (b == nullptr || b->numel() == cols);
  if (fits) return true;
  auto shape = [](const TensorView& t) { return shape_string(t.shape.data(), t.rank); };
  return note(invalid_argument(std::string(what) + ": x " + shape(x) + (transposed ? " @ w^T " : " @ w ") +
                               shape(w) + " -> " + shape(out) + (b != nullptr ? " + bias " + shape(*b) : "") +
                               " do not fit together"));
}

void CudaBackend::matmul(const TensorView& x, const TensorView& w, TensorView out) {
  KernelDType wd;
  if (!enter() || !weight_operand_dtype(w, "a CUDA matrix product", &wd)) return;
  if (out.dtype != DType::f32) {
    note(invalid_argument("a CUDA matrix product writes fp32 (linear_act writes narrow activations)"));
    return;
  }
  const void* xn = narrow_operand(x, wd);
  if (xn != nullptr) note(gemm_->nn(xn, w.data, wd, x.dim(0), x.dim(1), w.dim(1), out.f32()));
}

bool CudaBackend::fused_product(const TensorView& x, const TensorView& w, const TensorView& b,
                                Epilogue epilogue, const TensorView& out, KernelDType out_dtype) {
  if (fused_ == nullptr) return false;
  auto wd = kernel_dtype(w.dtype);
  if (!wd.is_ok() || *wd == KernelDType::f32) return false;  // matmul() reports it
  const void* xn = narrow_operand(x, *wd);
  if (xn == nullptr) return true;
  bool fused = false;
  if (!note(fused_->nn(xn, w.data, *wd, x.dim(0), x.dim(1), w.dim(1), epilogue, b.f32(), out.data, out_dtype,
                       &fused)))
    return true;
  return fused;
}

bool CudaBackend::few_rows_product(const TensorView& x, const TensorView& w, const TensorView* b, int act,
                                   const TensorView& out, KernelDType out_dtype) {
  if (!few_rows_kernel_) return false;
  auto wd = kernel_dtype(w.dtype);
  const int64_t m = x.dim(0), k = x.dim(1), n = w.dim(1);
  if (!wd.is_ok() || !few_rows_product_serves(m, k, n, *wd, w.data)) return false;
  const void* xn = narrow_operand(x, *wd);
  if (xn == nullptr) return true;
  float* partial = nullptr;
  if (const int64_t floats = few_rows_partial_floats(m, k, n); floats > 0) {
    partial = static_cast<float*>(scratch(product_partial_, static_cast<size_t>(floats) * sizeof(float)));
    if (partial == nullptr) return true;
  }
  check(launch_few_rows_product(xn, w.data, *wd, m, k, n, b != nullptr ? b->f32() : nullptr, act, out.data, out_dtype,
                                partial, static_cast<int32_t*>(arrivals_.data()), on_stream()),
        "a few-rows product");
  return true;
}

// Up to kFewRowsMax rows: the few-rows kernel, bias inside. More, with a bias: one cuBLASLt product
// with the bias in its epilogue where cuBLASLt offers one.
void CudaBackend::linear(const TensorView& x, const TensorView& w, const TensorView* b, TensorView out) {
  const TimedOp timed = time_op("linear", w.dim(0), w.dim(1), static_cast<double>(w.nbytes()));
  if (!product_shapes(x, w, b, out, false, "a CUDA linear product")) return;
  if (enter() && out.dtype == DType::f32 && few_rows_product(x, w, b, kNoActivation, out, KernelDType::f32)) return;
  if (b != nullptr && enter() && out.dtype == DType::f32 &&
      fused_product(x, w, *b, Epilogue::bias, out, KernelDType::f32))
    return;
  matmul(x, w, out);
  if (b != nullptr && enter())
    check(launch_bias_act(out.f32(), b->f32(), kNoActivation, out.dim(0), out.dim(1), on_stream()), "bias");
}

// Up to kFewRowsMax rows: the few-rows kernel, bias and activation inside. More, out narrow (the
// next product's operand): one cuBLASLt product with bias + activation in its epilogue where
// cuBLASLt offers one (tanh GELU, ReLU), else the product into fp32 scratch, then bias +
// activation written narrow. out fp32: the product, then bias + activation in place.
void CudaBackend::linear_act(const TensorView& x, const TensorView& w, const TensorView& b, Activation act,
                             TensorView out) {
  const TimedOp timed = time_op("linear + activation", w.dim(0), w.dim(1), static_cast<double>(w.nbytes()));
  KernelDType od;
  if (!enter() || !activation_dtype(out, &od) || !product_shapes(x, w, &b, out, false, "a CUDA linear product"))
    return;
  if (few_rows_product(x, w, &b, static_cast<int>(act), out, od)) return;
  Epilogue epilogue;
  if (od != KernelDType::f32 && fused_epilogue(act, &epilogue) && fused_product(x, w, b, epilogue, out, od))
    return;
  TensorView product = out;
  if (od != KernelDType::f32) {
    product.dtype = DType::f32;
    product.data = scratch(wide_, static_cast<size_t>(out.numel()) * sizeof(float));
    if (product.data == nullptr) return;
  }
  matmul(x, w, product);
  if (enter())
    check(launch_bias_act_into(product.f32(), b.f32(), static_cast<int>(act), out.dim(0), out.dim(1), out.data,
                               od, on_stream()),
          "bias + activation");
}

void CudaBackend::lm_head(const TensorView& x, const TensorView& wte, TensorView logits) {
  const TimedOp timed = time_op("lm_head", wte.dim(1), wte.dim(0), static_cast<double>(wte.nbytes()));
  KernelDType wd;
  if (!enter() || !weight_operand_dtype(wte, "the CUDA LM head", &wd) ||
      !product_shapes(x, wte, nullptr, logits, true, "the CUDA LM head"))
    return;
  const void* xn = narrow_operand(x, wd);
  if (xn == nullptr) return;
  if (few_rows_kernel_ && few_rows_lm_head_serves(x.dim(0), wte.dim(0), x.dim(1), wd, xn, wte.data)) {
    check(launch_few_rows_lm_head(xn, wte.data, wd, x.dim(0), wte.dim(0), x.dim(1), logits.f32(), on_stream()),
          "the few-rows LM head");
    return;
  }
  note(gemm_->nt(xn, wte.data, wd, x.dim(0), x.dim(1), wte.dim(0), logits.f32()));
}

}  // namespace kvmesh
