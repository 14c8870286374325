// cpu_matmul: accuracy against a double-precision reference, and bit-identical rows whatever the
// batch around them, the thread count or (for the FMA families) the ISA.
#include "worker/cpu/cpu_matmul.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/tensor.h"
#include "worker/cpu/cpu_isa.h"

namespace kvmesh {
namespace {

std::vector<float> random_vector(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

struct Shape {
  int64_t n_in, n_out;  // nn: w [n_in, n_out]; nt: w [n_out, n_in] (n_in = n_embd, n_out = n_vocab)
};

// Runs an op on rows [first, first + n_rows) of x; returns y [n_rows, n_out].
std::vector<float> run_nn(const std::vector<float>& x, int64_t first, int64_t n_rows,
                          const Shape& s, const std::vector<float>& w, const float* bias) {
  std::vector<float> y(static_cast<size_t>(n_rows * s.n_out), -7.0f);
  matmul_nn(x.data() + first * s.n_in, n_rows, s.n_in, w.data(), s.n_out, bias, y.data());
  return y;
}

std::vector<float> run_nt(const std::vector<float>& x, int64_t first, int64_t n_rows,
                          const Shape& s, const std::vector<float>& w) {
  std::vector<float> y(static_cast<size_t>(n_rows * s.n_out), -7.0f);
  matmul_nt(x.data() + first * s.n_in, n_rows, s.n_in, w.data(), s.n_out, y.data());
  return y;
}

// |y - ref| within the worst-case bound of a K-term float sum: (K + 2) * u * sum |terms|.
void expect_close(float y, double ref, double sum_abs, int64_t k, const std::string& what) {
  const double tol = static_cast<double>(k + 2) * 0x1p-24 * sum_abs + 1e-30;
  ASSERT_LE(std::abs(static_cast<double>(y) - ref), tol) << what << " y=" << y << " ref=" << ref;
}

class CpuMatmul : public ::testing::TestWithParam<CpuIsa> {
 protected:
  void SetUp() override {
    best_ = cpu_isa();
    if (!cpu_force_isa(GetParam())) GTEST_SKIP() << "CPU lacks " << cpu_isa_name(GetParam());
    threads_ = omp_get_max_threads();
  }
  void TearDown() override {
    cpu_force_isa(best_);
    omp_set_num_threads(threads_);
  }
  CpuIsa best_ = CpuIsa::scalar;
  int threads_ = 1;
};

TEST_P(CpuMatmul, NnMatchesDoubleReference) {
  const Shape shapes[] = {{33, 97}, {64, 48}, {1, 1}, {17, 5}, {768, 200}};
  for (const Shape& s : shapes) {
    for (int64_t t : {1, 3, 13, 40}) {
      for (bool with_bias : {false, true}) {
        const auto x = random_vector(t * s.n_in, 1);
        const auto w = random_vector(s.n_in * s.n_out, 2);
        const auto b = random_vector(s.n_out, 3);
        const auto y = run_nn(x, 0, t, s, w, with_bias ? b.data() : nullptr);
        for (int64_t r = 0; r < t; ++r) {
          for (int64_t n = 0; n < s.n_out; ++n) {
            double ref = with_bias ? b[n] : 0.0, sum_abs = with_bias ? std::abs(b[n]) : 0.0;
            for (int64_t k = 0; k < s.n_in; ++k) {
              const double term = double(x[r * s.n_in + k]) * double(w[k * s.n_out + n]);
              ref += term;
              sum_abs += std::abs(term);
            }
            expect_close(y[r * s.n_out + n], ref, sum_abs, s.n_in,
                         "nn " + std::to_string(s.n_in) + "x" + std::to_string(s.n_out) +
                             " T=" + std::to_string(t) + " row " + std::to_string(r) + " col " +
                             std::to_string(n));
          }
        }
      }
    }
  }
}

// n_in a multiple of 1024: the tiles read copies of x's rows, a chunk of row tiles at a time.
// Enough rows for several chunks at every width; each row as the double reference and bit for bit
// as that row alone.
TEST_P(CpuMatmul, NnOverCopiedRowsMatchesReferenceAndRowsAlone) {
  const Shape s{2048, 40};
  const int64_t t = 250;
  const auto x = random_vector(t * s.n_in, 11);
  const auto w = random_vector(s.n_in * s.n_out, 12);
  const auto b = random_vector(s.n_out, 13);
  const auto y = run_nn(x, 0, t, s, w, b.data());
  for (int64_t r = 0; r < t; ++r) {
    for (int64_t n = 0; n < s.n_out; ++n) {
      double ref = b[n], sum_abs = std::abs(b[n]);
      for (int64_t k = 0; k < s.n_in; ++k) {
        const double term = double(x[r * s.n_in + k]) * double(w[k * s.n_out + n]);
        ref += term;
        sum_abs += std::abs(term);
      }
      expect_close(y[r * s.n_out + n], ref, sum_abs, s.n_in,
                   "nn 2048x40 T=250 row " + std::to_string(r) + " col " + std::to_string(n));
    }
  }
  for (int64_t r : {int64_t(0), int64_t(63), int64_t(64), int64_t(100), int64_t(191), int64_t(192), int64_t(249)}) {
    const auto alone = run_nn(x, r, 1, s, w, b.data());
    ASSERT_EQ(std::memcmp(alone.data(), y.data() + r * s.n_out, static_cast<size_t>(s.n_out) * sizeof(float)), 0)
        << "row " << r;
  }
}

TEST_P(CpuMatmul, NtMatchesDoubleReference) {
  const Shape shapes[] = {{33, 97}, {768, 500}, {5, 3}, {16, 16}, {100, 1}};
  for (const Shape& s : shapes) {
    for (int64_t r_count : {1, 2, 7, 13}) {
      const auto x = random_vector(r_count * s.n_in, 4);
      const auto w = random_vector(s.n_out * s.n_in, 5);
      const auto y = run_nt(x, 0, r_count, s, w);
      for (int64_t r = 0; r < r_count; ++r) {
        for (int64_t v = 0; v < s.n_out; ++v) {
          double ref = 0.0, sum_abs = 0.0;
          for (int64_t e = 0; e < s.n_in; ++e) {
            const double term = double(x[r * s.n_in + e]) * double(w[v * s.n_in + e]);
            ref += term;
            sum_abs += std::abs(term);
          }
          expect_close(y[r * s.n_out + v], ref, sum_abs, s.n_in,
                       "nt " + std::to_string(s.n_in) + "x" + std::to_string(s.n_out) +
                           " R=" + std::to_string(r_count) + " row " + std::to_string(r) + " v " +
                           std::to_string(v));
        }
      }
    }
  }
}

constexpr int64_t kPoolRows = 64;
const int64_t kBatchSizes[] = {1, 2, 3, 7, 8, 9, 16, 33};

// Every row of every batch (several positions in the pool, 1-3 threads) equals that row alone.
template <class Run>
void expect_rows_invariant(const Shape& s, const Run& run, const std::string& what) {
  omp_set_num_threads(1);
  std::vector<std::vector<float>> alone(kPoolRows);
  for (int64_t r = 0; r < kPoolRows; ++r) alone[r] = run(r, 1);
  const size_t row_bytes = static_cast<size_t>(s.n_out) * sizeof(float);
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    for (int64_t bs : kBatchSizes) {
      for (int64_t first : {int64_t(0), int64_t(5), kPoolRows - bs}) {
        const auto y = run(first, bs);
        for (int64_t i = 0; i < bs; ++i) {
          ASSERT_EQ(std::memcmp(y.data() + i * s.n_out, alone[first + i].data(), row_bytes), 0)
              << what << " " << s.n_in << "x" << s.n_out << " threads=" << threads
              << " batch=" << bs << " first=" << first << " row " << i;
        }
      }
    }
  }
}

TEST_P(CpuMatmul, NnRowDoesNotDependOnBatchOrThreads) {
  const Shape shapes[] = {{33, 97}, {1031, 197}, {768, 2304}};
  for (const Shape& s : shapes) {
    const auto x = random_vector(kPoolRows * s.n_in, 6);
    const auto w = random_vector(s.n_in * s.n_out, 7);
    const auto b = random_vector(s.n_out, 8);
    for (bool with_bias : {false, true}) {
      const float* bias = with_bias ? b.data() : nullptr;
      expect_rows_invariant(
          s, [&](int64_t first, int64_t n) { return run_nn(x, first, n, s, w, bias); },
          with_bias ? "nn+bias" : "nn");
    }
  }
}

TEST_P(CpuMatmul, NtRowDoesNotDependOnBatchOrThreads) {
  const Shape shapes[] = {{33, 97}, {771, 1013}, {768, 4099}};
  for (const Shape& s : shapes) {
    const auto x = random_vector(kPoolRows * s.n_in, 9);
    const auto w = random_vector(s.n_out * s.n_in, 10);
    expect_rows_invariant(
        s, [&](int64_t first, int64_t n) { return run_nt(x, first, n, s, w); }, "nt");
  }
}

// bf16 weights: the widened weights through the fp32 kernels are the exact expectation, for every
// path (streamed rows, slabs, square blocks, the one-row LM head) and column tails.
struct Bf16Weights {
  std::vector<uint16_t> bits;
  std::vector<float> widened;
};

Bf16Weights random_bf16(size_t n, uint32_t seed) {
  Bf16Weights w;
  for (float v : random_vector(n, seed)) {
    w.bits.push_back(float_to_bf16(v));
    w.widened.push_back(bf16_to_float(w.bits.back()));
  }
  return w;
}

TEST_P(CpuMatmul, Bf16WeightsGiveTheFp32ProductOfTheWidenedWeights) {
  const Shape shapes[] = {{33, 97}, {1031, 197}, {768, 2304}, {17, 5}, {1, 1}};
  for (const Shape& s : shapes) {
    const auto x = random_vector(40 * s.n_in, 14);
    const auto b = random_vector(s.n_out, 15);
    const Bf16Weights w = random_bf16(s.n_in * s.n_out, 16);
    for (int threads : {1, 2}) {
      omp_set_num_threads(threads);
      for (int64_t t : {1, 2, 3, 4, 5, 13, 33, 40}) {
        const std::string what = std::to_string(s.n_in) + "x" + std::to_string(s.n_out) +
                                 " T=" + std::to_string(t) + " threads=" + std::to_string(threads);
        const size_t bytes = static_cast<size_t>(t * s.n_out) * sizeof(float);
        std::vector<float> got(static_cast<size_t>(t * s.n_out), -7.0f);
        for (const float* bias : {static_cast<const float*>(nullptr), b.data()}) {
          matmul_nn_bf16(x.data(), t, s.n_in, w.bits.data(), s.n_out, bias, got.data());
          const auto want = run_nn(x, 0, t, s, w.widened, bias);
          ASSERT_EQ(std::memcmp(got.data(), want.data(), bytes), 0) << "nn " << what;
        }
        matmul_nt_bf16(x.data(), t, s.n_in, w.bits.data(), s.n_out, got.data());
        const auto want = run_nt(x, 0, t, s, w.widened);
        ASSERT_EQ(std::memcmp(got.data(), want.data(), bytes), 0) << "nt " << what;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, CpuMatmul,
                         ::testing::Values(CpuIsa::avx512, CpuIsa::avx2, CpuIsa::scalar),
                         [](const auto& info) { return std::string(cpu_isa_name(info.param)); });

// AVX-512 and AVX2 run the same FMA chains and sum tree, so they agree to the bit.
TEST(CpuCpuIsa, Avx512AndAvx2AreBitIdentical) {
  if (!cpu_isa_supported(CpuIsa::avx512) || !cpu_isa_supported(CpuIsa::avx2))
    GTEST_SKIP() << "needs both avx512 and avx2";
  const CpuIsa best = cpu_isa();
  const Shape s{771, 333};
  const auto x = random_vector(20 * s.n_in, 11);
  const auto w = random_vector(s.n_in * s.n_out, 12);
  const auto b = random_vector(s.n_out, 13);
  std::vector<float> out[2][2];
  const CpuIsa isas[] = {CpuIsa::avx512, CpuIsa::avx2};
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(cpu_force_isa(isas[i]));
    out[i][0] = run_nn(x, 0, 20, s, w, b.data());
    out[i][1] = run_nt(x, 0, 20, s, w);
  }
  cpu_force_isa(best);
  for (int op = 0; op < 2; ++op)
    EXPECT_EQ(std::memcmp(out[0][op].data(), out[1][op].data(), out[0][op].size() * sizeof(float)),
              0)
        << (op == 0 ? "nn" : "nt");
}

}  // namespace
}  // namespace kvmesh
