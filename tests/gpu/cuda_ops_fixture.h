// The CUDA op tests' fixture: a bf16 CUDA backend beside the CPU backend (its twin), device copies
// of host values (outputs poisoned with NaN first), and the error measures the tolerances use.
// Skips without a GPU.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "worker/backend.h"
#include "worker/cpu/cpu_backend.h"
#include "worker/cuda/cuda_backend.h"

namespace kvmesh {

inline std::vector<float> random_values(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// bf16-rounded copies, so the CPU sees the values the GPU's narrow operands hold.
inline std::vector<float> bf16_rounded(const std::vector<float>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = bf16_to_float(float_to_bf16(v[i]));
  return out;
}

inline double rel_error(const std::vector<float>& got, const std::vector<float>& want) {
  double err = 0.0, scale = 1.0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isnan(got[i])) return INFINITY;
    err = std::max(err, static_cast<double>(std::fabs(got[i] - want[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(want[i])));
  }
  return err / scale;
}

// One bf16 step (8 significant bits) at want's magnitude; 0 for 0.
inline double bf16_step(float want) {
  int exponent = 0;
  (void)std::frexp(want, &exponent);  // |want| in [2^(exponent-1), 2^exponent)
  return want != 0.0f ? std::ldexp(1.0, exponent - 8) : 0.0;
}

// max(1, max |want|): the scale the products' tolerances are relative to.
inline double output_scale(const std::vector<float>& want) {
  double scale = 1.0;
  for (float v : want) scale = std::max(scale, static_cast<double>(std::fabs(v)));
  return scale;
}

// Elements of got (bf16 values) more than one bf16 step of want's magnitude (plus `slack`) away
// from want (fp32): 0 when got is want rounded, up to one rounding's difference (the values the
// device rounded may straddle a rounding boundary). NaN counts.
inline int64_t beyond_one_bf16_step(const std::vector<float>& got, const std::vector<float>& want,
                                    double slack = 1e-7) {
  int64_t n = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double step = bf16_step(want[i]);
    if (!(std::fabs(static_cast<double>(got[i]) - want[i]) <= step + slack)) ++n;
  }
  return n;
}

// The element of got furthest past what beyond_one_bf16_step allows, as "element i: got g, want w
// (allowed d)", for a failure's message; empty when none is past it.
inline std::string worst_bf16_miss(const std::vector<float>& got, const std::vector<float>& want,
                                   double slack = 1e-7) {
  double worst = 0.0;
  std::string text;
  for (size_t i = 0; i < want.size(); ++i) {
    const double allowed = bf16_step(want[i]) + slack;
    const double diff = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double past = std::isnan(diff) ? INFINITY : diff - allowed;
    if (past > worst || (std::isnan(diff) && text.empty())) {
      worst = past;
      text = "element " + std::to_string(i) + ": got " + std::to_string(got[i]) + ", want " +
             std::to_string(want[i]) + " (allowed " + std::to_string(allowed) + ")";
    }
  }
  return text;
}

class CudaOps : public ::testing::Test {
 public:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA GPU usable (" << cuda_no_device_reason() << "): the CUDA op tests need one";
    use_gpu_backend(true);
    cpu_ = make_cpu_backend(2);
  }
  // A new bf16 CUDA backend for the next ops, with products' epilogues fused or not, products of a
  // few rows by the few-rows kernel or cuBLAS, and kernels launched to overlap or one after another
  // (tensors made before stay valid: they are device memory of the same GPU).
  void use_gpu_backend(bool fused_epilogues, bool few_rows_kernel = true, bool overlap_launches = true) {
    CudaBackendOptions options;
    options.fused_epilogues = fused_epilogues;
    options.few_rows_kernel = few_rows_kernel;
    options.overlap_launches = overlap_launches;
    auto gpu = make_cuda_backend(0, DType::bf16, options);
    ASSERT_TRUE(gpu.is_ok()) << gpu.status().to_string();
    gpu_ = std::move(gpu).value();
  }

  // A device copy of host values, poisoned first for outputs.
  TensorView device(const std::vector<float>& host, int64_t rows, int64_t cols) {
    auto b = gpu_->alloc(host.size() * sizeof(float));
    EXPECT_TRUE(b.is_ok());
    gpu_->upload(b->data(), host.data(), host.size() * sizeof(float));
    TensorView v = TensorView::of(b->f32(), {rows, cols});
    buffers_.push_back(std::move(b).value());
    return v;
  }
  // Room for rows x cols fp32 values, every 16-bit half of them a bf16 NaN too (0x7fc0), so an
  // output written narrow into it shows every element it left out.
  TensorView device_poisoned(int64_t rows, int64_t cols) {
    const uint32_t bits = 0x7fc07fc0u;
    float poison = 0.0f;
    std::memcpy(&poison, &bits, sizeof(poison));
    return device(std::vector<float>(static_cast<size_t>(rows * cols), poison), rows, cols);
  }
  // A bf16 device tensor's values as floats.
  std::vector<float> host_bf16(const TensorView& v) {
    std::vector<uint16_t> raw(static_cast<size_t>(v.numel()));
    gpu_->download(raw.data(), v.data, raw.size() * sizeof(uint16_t));
    EXPECT_TRUE(gpu_->status().is_ok()) << gpu_->status().to_string();
    std::vector<float> out(raw.size());
    for (size_t i = 0; i < raw.size(); ++i) out[i] = bf16_to_float(raw[i]);
    return out;
  }
  std::vector<float> host(const TensorView& v) {
    std::vector<float> out(static_cast<size_t>(v.numel()));
    gpu_->download(out.data(), v.data, out.size() * sizeof(float));
    EXPECT_TRUE(gpu_->status().is_ok()) << gpu_->status().to_string();
    return out;
  }
  TensorView weight(const std::vector<float>& w, int64_t rows, int64_t cols, bool matrix) {
    auto v = gpu_->place_weight(w, rows, cols, matrix, &buffers_);
    EXPECT_TRUE(v.is_ok()) << v.status().to_string();
    return *v;
  }

  std::unique_ptr<Backend> gpu_, cpu_;
  std::vector<Buffer> buffers_;
};

}  // namespace kvmesh
