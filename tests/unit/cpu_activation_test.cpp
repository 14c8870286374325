// CPU activations against the double-precision formulas they stand for, over a dense grid and at
// the edges (signed zeros, infinities, NaN, overflowing cubes), independent of where an element
// sits in the array and of the vector width (cpu_isa.h).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "worker/cpu/cpu_activation.h"
#include "worker/cpu/cpu_isa.h"

namespace kvmesh {
namespace {

double gelu_tanh_reference(double x, bool fast) {
  const double k = std::sqrt(2.0 / M_PI);
  const double y = fast ? x * 0.7978845608 * (1.0 + 0.044715 * x * x) : k * (x + 0.044715 * x * x * x);
  return 0.5 * x * (1.0 + std::tanh(y));
}

std::vector<float> grid() {
  std::vector<float> xs;
  for (int i = -200000; i <= 200000; ++i) xs.push_back(static_cast<float>(i) * 1e-4f);  // [-20, 20]
  for (float x : {-1e3f, -88.0f, -45.0f, 45.0f, 88.0f, 1e3f, 1e20f}) xs.push_back(x);
  return xs;
}

TEST(CpuActivation, TanhGeluFormsMatchTheirFormulas) {
  for (Activation act : {Activation::gelu_new, Activation::gelu_fast}) {
    const std::vector<float> xs = grid();
    std::vector<float> ys = xs;
    cpu_activation(ys.data(), static_cast<int64_t>(ys.size()), act);
    double worst = 0.0;
    for (size_t i = 0; i < xs.size(); ++i) {
      const double want = gelu_tanh_reference(xs[i], act == Activation::gelu_fast);
      // Relative to the result, or to 1e-7 |x| where the result is that small (x far below 0): y's
      // own float rounding, which e^(-2y) magnifies by |2y| there, bounds the error.
      const double err = std::fabs(ys[i] - want) / std::max(std::fabs(want), 1e-7 * std::fabs(xs[i]) + 1e-30);
      worst = std::max(worst, err);
      ASSERT_LE(err, 1e-5) << activation_name(act) << " x = " << xs[i] << " got " << ys[i] << " want " << want;
    }
    std::printf("  %s: worst relative error %.2e\n", activation_name(act), worst);
  }
}

TEST(CpuActivation, EdgeValues) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x = {0.0f, -0.0f, inf, std::nanf(""), 3e13f, -3e13f};
  cpu_activation(x.data(), static_cast<int64_t>(x.size()), Activation::gelu_new);
  EXPECT_EQ(x[0], 0.0f);
  EXPECT_EQ(x[1], 0.0f);
  EXPECT_EQ(x[2], inf);
  EXPECT_TRUE(std::isnan(x[3]));
  EXPECT_EQ(x[4], 3e13f);  // x^3 overflows: y = inf, GELU(x) = x
  EXPECT_LT(std::fabs(x[5]), 1e-20f);  // y = -inf: GELU(x) = 0 (e^(-2y) is clamped to 2e38)
}

TEST(CpuActivation, OtherFormsAndPositionIndependence) {
  std::vector<float> x = {-2.0f, -0.5f, 0.0f, 0.5f, 2.0f};
  std::vector<float> relu = x, erf_gelu = x;
  cpu_activation(relu.data(), 5, Activation::relu);
  cpu_activation(erf_gelu.data(), 5, Activation::gelu);
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(relu[i], std::max(x[i], 0.0f));
    EXPECT_NEAR(erf_gelu[i], 0.5 * x[i] * (1.0 + std::erf(x[i] / std::sqrt(2.0))), 1e-6);
  }
  // The same value alone, in the tail after whole vectors, and inside a vector gives one answer.
  const float v = -1.2345f;
  for (int n : {1, 17, 33, 40}) {
    std::vector<float> a(static_cast<size_t>(n), v);
    cpu_activation(a.data(), n, Activation::gelu_new);
    std::vector<float> one = {v};
    cpu_activation(one.data(), 1, Activation::gelu_new);
    for (float y : a) EXPECT_EQ(y, one[0]) << n;
  }
}

TEST(CpuActivation, EveryVectorWidthGivesTheSameBits) {
  const CpuIsa best = cpu_isa();
  std::vector<float> xs = grid();
  xs.resize(xs.size() - 3);  // a length that leaves a partial vector at the end
  for (Activation act : {Activation::gelu_new, Activation::gelu_fast}) {
    std::vector<std::vector<float>> outs;
    std::vector<CpuIsa> ran;
    for (CpuIsa isa : {CpuIsa::avx512, CpuIsa::avx2, CpuIsa::scalar}) {
      if (!cpu_force_isa(isa)) continue;
      outs.push_back(xs);
      cpu_activation(outs.back().data(), static_cast<int64_t>(xs.size()), act);
      ran.push_back(isa);
    }
    cpu_force_isa(best);
    for (size_t i = 1; i < outs.size(); ++i)
      EXPECT_EQ(0, std::memcmp(outs[0].data(), outs[i].data(), xs.size() * sizeof(float)))
          << activation_name(act) << ": " << cpu_isa_name(ran[i]) << " against " << cpu_isa_name(ran[0]);
    if (outs.size() < 2) GTEST_SKIP() << "this CPU runs only " << cpu_isa_name(ran[0]);
  }
}

}  // namespace
}  // namespace kvmesh
