// The CUDA matrix products against the CPU on the same bf16-rounded operands. Plain products and
// the LM head: within 1e-5 of max(1, max |cpu|) (fp32 accumulation in another order). Products with
// a bias and an activation, whether cuBLASLt's epilogue runs them or kernels of their own do: the
// same 1e-5 when written fp32, and each element within one bf16 step of the CPU's when written as
// the next product's bf16 operand. Skips without a GPU.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "gpu/cuda_ops_fixture.h"

namespace kvmesh {
namespace {

TensorView host_view(const std::vector<float>& v, int64_t rows, int64_t cols) {
  return TensorView::of(const_cast<float*>(v.data()), {rows, cols});
}

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
  const int64_t off_f32_bias = beyond_one_bf16_step(got, want);
  const int64_t off_narrow_bias = beyond_one_bf16_step(got, want_narrow_bias);
  EXPECT_TRUE(off_f32_bias == 0 || off_narrow_bias == 0)
      << off_f32_bias << " elements off the fp32-bias reference, " << off_narrow_bias << " off the bf16-bias one";
}

// The QKV product (+ bias, fp32) and the fc1 product (activation of + bias, into bf16) at decode
// and prefill row counts, an output width cuBLASLt's fastest kernels take and one they may not
// (300: rows not 16-byte multiples), on a backend with fused epilogues and on one without. Apart,
// the fc1 epilogue adds the fp32 bias; fused, it may add it rounded to bf16.
TEST_F(CudaOps, BiasAndActivationProductsFusedOrNot) {
  const int64_t in = 320;
  uint32_t seed = 100;
  for (const bool fused : {true, false}) {
    use_gpu_backend(fused);
    for (const int64_t out_c : {1280, 300}) {
      for (const int64_t n : {1, 3, 8, 64}) {
        seed += 3;
        const auto x = random_values(n * in, seed), w = random_values(in * out_c, seed + 1, 0.05f);
        const auto b = random_values(out_c, seed + 2, 0.5f);
        const auto x_r = bf16_rounded(x), w_r = bf16_rounded(w);
        const TensorView xg = device(x, n, in), wg = weight(w, in, out_c, true), bg = weight(b, 1, out_c, false);
        const TensorView bc = host_view(b, 1, out_c);
        const std::string at = std::string(fused ? "fused" : "apart") + ", [" + std::to_string(n) + ", " +
                               std::to_string(in) + "] @ [" + std::to_string(in) + ", " + std::to_string(out_c) + "]";
        std::vector<float> want(static_cast<size_t>(n * out_c));
        cpu_->linear(host_view(x_r, n, in), host_view(w_r, in, out_c), &bc, TensorView::of(want.data(), {n, out_c}));
        TensorView out = device_poisoned(n, out_c);
        gpu_->linear(xg, wg, &bg, out);
        EXPECT_LT(rel_error(host(out), want), 1e-5) << at << ", + bias";
        // A fused epilogue may read the bias rounded to bf16 (cuBLASLt pairs a bf16 output with a
        // bf16 bias): the whole output then matches that bias instead.
        const auto b_r = bf16_rounded(b);
        const TensorView bc_r = host_view(b_r, 1, out_c);
        std::vector<float> want_r(want.size());
        for (Activation act : {Activation::gelu_new, Activation::gelu, Activation::gelu_fast, Activation::relu}) {
          cpu_->linear_act(host_view(x_r, n, in), host_view(w_r, in, out_c), bc, act,
                           TensorView::of(want.data(), {n, out_c}));
          cpu_->linear_act(host_view(x_r, n, in), host_view(w_r, in, out_c), bc_r, act,
                           TensorView::of(want_r.data(), {n, out_c}));
          TensorView narrow = device_poisoned(n, out_c);
          narrow.dtype = DType::bf16;
          gpu_->linear_act(xg, wg, bg, act, narrow);
          const std::vector<float> got = host_bf16(narrow);
          const int64_t off = beyond_one_bf16_step(got, want);
          const int64_t off_rounded_bias = fused ? beyond_one_bf16_step(got, want_r) : off;
          EXPECT_TRUE(off == 0 || off_rounded_bias == 0)
              << at << ", " << activation_name(act) << ": " << off << " elements off with the fp32 bias, "
              << off_rounded_bias << " with it rounded to bf16";
        }
      }
    }
  }
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
