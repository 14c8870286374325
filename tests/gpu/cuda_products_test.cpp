// The CUDA matrix products against the CPU on the same bf16-rounded operands. Plain products and
// the LM head: within 1e-5 of max(1, max |cpu|) (fp32 accumulation in another order). Products with
// a bias and an activation, whether the few-rows kernel, cuBLASLt's epilogue or kernels of their own
// run them: the same 1e-5 when written fp32; written as the next product's bf16 operand, each
// element within one bf16 step of the CPU's plus that 1e-5, or plus 2^-8 of the scale where
// cuBLASLt's epilogue runs (it may round the product and the bias to bf16 before it adds them, and
// approximates tanh: small against the output's scale, not against its smallest elements). Skips
// without a GPU.
#include <gtest/gtest.h>

#include <functional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "gpu/cuda_ops_fixture.h"
#include "worker/cuda/kernels.h"

namespace kvmesh {
namespace {

TensorView host_view(const std::vector<float>& v, int64_t rows, int64_t cols) {
  return TensorView::of(const_cast<float*>(v.data()), {rows, cols});
}

// "[rows, k] @ [k, cols]", or "... @ [cols, k]^T" for the LM head.
std::string product_text(int64_t rows, int64_t k, int64_t cols, bool transposed = false) {
  std::ostringstream text;
  text << "[" << rows << ", " << k << "] @ [";
  if (transposed)
    text << cols << ", " << k << "]^T";
  else
    text << k << ", " << cols << "]";
  return text.str();
}

constexpr double kAccumulationSlack = 1e-5;             // of the scale: fp32 sums in another order
constexpr double kEpilogueSlack = 1.0 / 256.0;          // of the scale: cuBLASLt's epilogue

TEST_F(CudaOps, LinearAndLmHeadOnBf16Operands) {
  const int64_t n = 5, in = 256, out_c = 320, v = 1000;
  auto x = random_values(n * in, 9), w = random_values(in * out_c, 10, 0.05f), b = random_values(out_c, 11);
  auto wte = random_values(v * in, 12, 0.05f);
  const auto x_r = bf16_rounded(x), w_r = bf16_rounded(w), wte_r = bf16_rounded(wte);
  std::vector<float> want(n * out_c), want_logits(n * v);
  cpu_->linear_act(host_view(x_r, n, in), host_view(w_r, in, out_c), host_view(b, 1, out_c), Activation::gelu_new,
                   TensorView::of(want.data(), {n, out_c}));
  cpu_->lm_head(host_view(x_r, n, in), host_view(wte_r, v, in), TensorView::of(want_logits.data(), {n, v}));
  TensorView xg = device(x, n, in), out = device_poisoned(n, out_c), logits = device_poisoned(n, v);
  const TensorView wg = weight(w, in, out_c, true), bg = weight(b, 1, out_c, false);
  gpu_->linear_act(xg, wg, bg, Activation::gelu_new, out);
  gpu_->lm_head(xg, weight(wte, v, in, true), logits);
  EXPECT_LT(rel_error(host(out), want), 1e-5);
  EXPECT_LT(rel_error(host(logits), want_logits), 1e-5);
  // Written as the bf16 operand of the next product instead: the same values, rounded. A fused
  // epilogue may add the bias rounded to bf16 (cuBLASLt pairs a bf16 output with a bf16 bias), so
  // the whole output matches one of the two references.
  std::vector<float> want_narrow_bias(n * out_c);
  const auto b_r = bf16_rounded(b);
  cpu_->linear_act(host_view(x_r, n, in), host_view(w_r, in, out_c), host_view(b_r, 1, out_c), Activation::gelu_new,
                   TensorView::of(want_narrow_bias.data(), {n, out_c}));
  TensorView narrow = device_poisoned(n, out_c);
  narrow.dtype = DType::bf16;
  gpu_->linear_act(xg, wg, bg, Activation::gelu_new, narrow);
  const auto got = host_bf16(narrow);
  const double slack = kEpilogueSlack * output_scale(want);
  const int64_t off_f32_bias = beyond_one_bf16_step(got, want, slack);
  const int64_t off_narrow_bias = beyond_one_bf16_step(got, want_narrow_bias, slack);
  EXPECT_TRUE(off_f32_bias == 0 || off_narrow_bias == 0)
      << off_f32_bias << " elements off the fp32-bias reference, " << off_narrow_bias << " off the bf16-bias one";
}

// The QKV product (+ bias, fp32) and the fc1 product (activation of + bias, into bf16) at decode
// and prefill row counts, an output width cuBLASLt's fastest kernels take and one they may not
// (300: rows not 16-byte multiples, which the few-rows kernel does not take either), on backends
// with fused epilogues or not and with the few-rows kernel or not.
TEST_F(CudaOps, BiasAndActivationProductsFusedOrNot) {
  const int64_t in = 320;
  uint32_t seed = 100;
  for (const bool fused : {true, false}) {
    for (const bool few_rows : {true, false}) {
      use_gpu_backend(fused, few_rows);
      for (const int64_t out_c : {1280, 300}) {
        for (const int64_t n : {1, 3, 8, 64}) {
          seed += 3;
          const auto x = random_values(n * in, seed), w = random_values(in * out_c, seed + 1, 0.05f);
          const auto b = random_values(out_c, seed + 2, 0.5f);
          const auto x_r = bf16_rounded(x), w_r = bf16_rounded(w);
          const TensorView xg = device(x, n, in), wg = weight(w, in, out_c, true), bg = weight(b, 1, out_c, false);
          const TensorView bc = host_view(b, 1, out_c);
          const bool own_kernel = few_rows && few_rows_product_serves(n, in, out_c, KernelDType::bf16, wg.data);
          const bool lt_epilogue = fused && !own_kernel;
          const std::string at = std::string(fused ? "fused" : "apart") + (few_rows ? ", few-rows kernel, " : ", ") +
                                 product_text(n, in, out_c);
          std::vector<float> want(static_cast<size_t>(n * out_c));
          cpu_->linear(host_view(x_r, n, in), host_view(w_r, in, out_c), &bc, TensorView::of(want.data(), {n, out_c}));
          TensorView out = device_poisoned(n, out_c);
          gpu_->linear(xg, wg, &bg, out);
          EXPECT_LT(rel_error(host(out), want), kAccumulationSlack) << at << ", + bias";
          for (Activation act : {Activation::gelu_new, Activation::gelu, Activation::gelu_fast, Activation::relu}) {
            cpu_->linear_act(host_view(x_r, n, in), host_view(w_r, in, out_c), bc, act,
                             TensorView::of(want.data(), {n, out_c}));
            TensorView narrow = device_poisoned(n, out_c);
            narrow.dtype = DType::bf16;
            gpu_->linear_act(xg, wg, bg, act, narrow);
            const std::vector<float> got = host_bf16(narrow);
            const double slack = (lt_epilogue ? kEpilogueSlack : kAccumulationSlack) * output_scale(want);
            EXPECT_EQ(beyond_one_bf16_step(got, want, slack), 0)
                << at << ", " << activation_name(act) << ", worst " << worst_bf16_miss(got, want, slack);
          }
        }
      }
    }
  }
}

// The few-rows kernel at every row count it takes, for shapes with one chunk of rows of w or many,
// row counts of w that are no multiple of its passes and widths that are no multiple of its tiles:
// fp32 out without a bias and with one, bf16 out with an activation, each against the CPU; and each
// row's result identical whatever the number of rows beside it (a graph's padded batch).
TEST_F(CudaOps, FewRowsProductsAtEveryRowCount) {
  struct Shape {
    int64_t in, out_c;
  };
  uint32_t seed = 500;
  for (const Shape shape : {Shape{20, 72}, Shape{1000, 136}, Shape{600, 1280}}) {
    const int64_t in = shape.in, out_c = shape.out_c;
    const auto x = random_values(kFewRowsMax * in, ++seed), w = random_values(in * out_c, ++seed, 0.05f);
    const auto b = random_values(out_c, ++seed, 0.5f);
    const auto x_r = bf16_rounded(x), w_r = bf16_rounded(w);
    const TensorView wg = weight(w, in, out_c, true), bg = weight(b, 1, out_c, false);
    const TensorView bc = host_view(b, 1, out_c);
    std::vector<float> all_rows;  // the kFewRowsMax-row product, bf16 out, gelu_new
    for (int64_t n = kFewRowsMax; n >= 1; --n) {
      const std::string at = product_text(n, in, out_c);
      ASSERT_TRUE(few_rows_product_serves(n, in, out_c, KernelDType::bf16, wg.data)) << at;
      const std::vector<float> xn(x.begin(), x.begin() + n * in), xn_r(x_r.begin(), x_r.begin() + n * in);
      const TensorView xg = device(xn, n, in);
      std::vector<float> want(static_cast<size_t>(n * out_c));
      cpu_->linear(host_view(xn_r, n, in), host_view(w_r, in, out_c), nullptr, TensorView::of(want.data(), {n, out_c}));
      TensorView out = device_poisoned(n, out_c);
      gpu_->linear(xg, wg, nullptr, out);
      EXPECT_LT(rel_error(host(out), want), kAccumulationSlack) << at;
      cpu_->linear(host_view(xn_r, n, in), host_view(w_r, in, out_c), &bc, TensorView::of(want.data(), {n, out_c}));
      out = device_poisoned(n, out_c);
      gpu_->linear(xg, wg, &bg, out);
      EXPECT_LT(rel_error(host(out), want), kAccumulationSlack) << at << ", + bias";
      cpu_->linear_act(host_view(xn_r, n, in), host_view(w_r, in, out_c), bc, Activation::gelu_new,
                       TensorView::of(want.data(), {n, out_c}));
      TensorView narrow = device_poisoned(n, out_c);
      narrow.dtype = DType::bf16;
      gpu_->linear_act(xg, wg, bg, Activation::gelu_new, narrow);
      const std::vector<float> got = host_bf16(narrow);
      const double slack = kAccumulationSlack * output_scale(want);
      EXPECT_EQ(beyond_one_bf16_step(got, want, slack), 0) << at << ", gelu_new, worst " << worst_bf16_miss(got, want, slack);
      if (n == kFewRowsMax) all_rows = got;
      for (size_t i = 0; i < got.size(); ++i)
        if (got[i] != all_rows[i]) {
          ADD_FAILURE() << at << ": element " << i << " is " << got[i] << " beside " << n << " rows, "
                        << all_rows[i] << " beside " << kFewRowsMax;
          break;
        }
    }
  }
  EXPECT_TRUE(gpu_->status().is_ok()) << gpu_->status().to_string();
}

// The few-rows LM head at every row count it takes, for embeddings of one piece per lane and one
// more (264: lane 0 has two) and of many, against the CPU; each row's logits identical whatever the
// number of rows beside it. Narrower embeddings are not its own (they go through cuBLAS).
TEST_F(CudaOps, FewRowsLmHeadAtEveryRowCount) {
  uint32_t seed = 700;
  for (const int64_t e : {264, 1600}) {
    const int64_t v = 1001;
    const auto x = random_values(kFewRowsMax * e, ++seed), wte = random_values(v * e, ++seed, 0.05f);
    const auto x_r = bf16_rounded(x), wte_r = bf16_rounded(wte);
    const TensorView wg = weight(wte, v, e, true);
    std::vector<float> all_rows;
    for (int64_t n = kFewRowsMax; n >= 1; --n) {
      const std::string at = product_text(n, e, v, true);
      const std::vector<float> xn(x.begin(), x.begin() + n * e), xn_r(x_r.begin(), x_r.begin() + n * e);
      const TensorView xg = device(xn, n, e);
      EXPECT_TRUE(few_rows_lm_head_serves(n, v, e, KernelDType::bf16, xg.data, wg.data)) << at;
      std::vector<float> want(static_cast<size_t>(n * v));
      cpu_->lm_head(host_view(xn_r, n, e), host_view(wte_r, v, e), TensorView::of(want.data(), {n, v}));
      TensorView logits = device_poisoned(n, v);
      gpu_->lm_head(xg, wg, logits);
      const std::vector<float> got = host(logits);
      EXPECT_LT(rel_error(got, want), kAccumulationSlack) << at;
      if (n == kFewRowsMax) all_rows = got;
      for (size_t i = 0; i < got.size(); ++i)
        if (got[i] != all_rows[i]) {
          ADD_FAILURE() << at << ": logit " << i << " is " << got[i] << " beside " << n << " rows, " << all_rows[i]
                        << " beside " << kFewRowsMax;
          break;
        }
    }
  }
  EXPECT_TRUE(gpu_->status().is_ok()) << gpu_->status().to_string();
}

// Shapes that do not fit together are an error of the backend, named, never a product that reads
// past a buffer: each case on a backend of its own (errors stick).
TEST_F(CudaOps, ProductsOfMismatchedShapesAreErrors) {
  const auto x = random_values(2 * 16, 40), w = random_values(16 * 8, 41);
  const auto wte = random_values(10 * 16, 43);
  const std::vector<std::pair<std::string, std::function<void(Backend&)>>> cases = {
      {"x [2, 16] @ w [12, 8]",
       [&](Backend& g) { g.linear(device(x, 2, 16), weight(std::vector<float>(12 * 8, 0.1f), 12, 8, true), nullptr,
                                  device_poisoned(2, 8)); }},
      {"out [2, 9] for w [16, 8]",
       [&](Backend& g) { g.linear(device(x, 2, 16), weight(w, 16, 8, true), nullptr, device_poisoned(2, 9)); }},
      {"bias [1, 7] for 8 columns",
       [&](Backend& g) {
         g.linear_act(device(x, 2, 16), weight(w, 16, 8, true), weight(std::vector<float>(7, 0.1f), 1, 7, false),
                      Activation::gelu_new, device_poisoned(2, 8));
       }},
      {"LM head [2, 16] @ wte [10, 12]^T",
       [&](Backend& g) { g.lm_head(device(x, 2, 16), weight(std::vector<float>(10 * 12, 0.1f), 10, 12, true),
                                   device_poisoned(2, 10)); }},
      {"LM head logits [2, 11] for a vocabulary of 10",
       [&](Backend& g) { g.lm_head(device(x, 2, 16), weight(wte, 10, 16, true), device_poisoned(2, 11)); }},
  };
  for (const auto& [what, run] : cases) {
    use_gpu_backend(true);
    run(*gpu_);
    const Status status = gpu_->status();
    EXPECT_EQ(status.code(), StatusCode::invalid_argument) << what << ": " << status.to_string();
    EXPECT_NE(status.message().find("do not fit together"), std::string::npos) << what << ": " << status.to_string();
  }
}

}  // namespace
}  // namespace kvmesh
