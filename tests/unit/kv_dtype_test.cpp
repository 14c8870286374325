// KV dtypes: page sizes (i8 about a quarter of f32), row conversion error bounds, and paged
// attention and whole-model log-probs with bf16 / f16 / i8 pages close to f32 pages.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "worker/cpu/cpu_attention.h"
#include "worker/kv_quant.h"
#include "worker/kv_store.h"
#include "worker/worker.h"

namespace kvmesh {
namespace {

TEST(KvDtype, PageBytesFollowTheDtype) {
  // GPT-2 124M on one rank: 12 layers, 12 heads of 64, 16 tokens a page.
  const int64_t f32 = kv_page_bytes(DType::f32, 12, 16, 12, 64);
  EXPECT_EQ(f32, 12 * 2 * 16 * 12 * 64 * 4);
  EXPECT_EQ(kv_page_bytes(DType::bf16, 12, 16, 12, 64) * 2, f32);
  EXPECT_EQ(kv_page_bytes(DType::f16, 12, 16, 12, 64) * 2, f32);
  const int64_t i8 = kv_page_bytes(DType::i8, 12, 16, 12, 64);
  EXPECT_EQ(i8, 12 * 2 * 16 * 12 * (64 + 4));  // int8 data + one fp32 scale per token and head
  EXPECT_DOUBLE_EQ(static_cast<double>(i8) / static_cast<double>(f32), 68.0 / 256.0);  // 0.2656
  // head_dim 128 (GPT-3 13B and up): 132 / 512 = 0.258.
  EXPECT_NEAR(static_cast<double>(kv_page_bytes(DType::i8, 2, 16, 4, 128)) /
                  static_cast<double>(kv_page_bytes(DType::f32, 2, 16, 4, 128)),
              132.0 / 512.0, 1e-9);
  for (DType d : {DType::f32, DType::bf16, DType::f16, DType::i8}) {
    for (int head_dim : {3, 8, 64}) {
      KvPoolView v{nullptr, d, 1, 3, 5, 7, head_dim};
      EXPECT_EQ(v.page_bytes(), kv_page_bytes(d, 3, 5, 7, head_dim)) << dtype_name(d);
      if (d == DType::i8) {
        EXPECT_EQ(v.scales_offset() % 16, 0);
      }
    }
  }
  EXPECT_FALSE(kv_dtype_supported(DType::i32));
}

std::vector<float> normal(size_t n, uint32_t seed, float sd = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sd);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

TEST(KvDtype, RowConversionErrorBounds) {
  const int n_heads = 3, d = 64;
  auto src = normal(n_heads * d, 1, 3.0f);
  src[5] = 0.0f;
  std::vector<float> zero_head(d, 0.0f);
  for (DType dtype : {DType::f32, DType::bf16, DType::f16, DType::i8}) {
    std::vector<uint8_t> row(n_heads * d * dtype_size(dtype));
    std::vector<float> scales(n_heads, -1.0f), back(d);
    kv_store_row(dtype, src.data(), n_heads, d, row.data(), scales.data());
    for (int h = 0; h < n_heads; ++h) {
      kv_load_head(dtype, row.data() + h * d * dtype_size(dtype), scales[h], d, back.data());
      float absmax = 0.0f;
      for (int c = 0; c < d; ++c) absmax = std::max(absmax, std::fabs(src[h * d + c]));
      for (int c = 0; c < d; ++c) {
        const float x = src[h * d + c], err = std::fabs(back[c] - x);
        switch (dtype) {
          case DType::f32: EXPECT_EQ(back[c], x); break;
          case DType::bf16: EXPECT_LE(err, std::fabs(x) * 0x1p-8f); break;   // 8 bits mantissa
          case DType::f16: EXPECT_LE(err, std::fabs(x) * 0x1p-11f); break;   // 11 bits
          default: EXPECT_LE(err, absmax / 254.0f * 1.0001f); break;         // half a step
        }
      }
    }
  }
  // An all-zero head quantizes to scale 0 and reads back as zeros.
  int8_t q[64];
  float scale = -1.0f, out[64];
  kv_store_row(DType::i8, zero_head.data(), 1, d, q, &scale);
  EXPECT_EQ(scale, 0.0f);
  kv_load_head(DType::i8, q, scale, d, out);
  for (float x : out) EXPECT_EQ(x, 0.0f);
}

// A ragged batch over a pool: sequence 0 prefills 37 tokens from scratch; sequence 1 has 21 tokens
// cached (written by an earlier step) and decodes 1. Returns attention out [T, E].
std::vector<float> run_attention(DType dtype, int n_heads, int d, int layer) {
  const int bs = 16, n_layers = 2, n_pages = 8;
  const int64_t e = static_cast<int64_t>(n_heads) * d;
  std::vector<uint8_t> bytes(n_pages * kv_page_bytes(dtype, n_layers, bs, n_heads, d));
  KvPoolView pool{bytes.data(), dtype, n_pages, n_layers, bs, n_heads, d};
  const std::vector<int32_t> table0 = {5, 2, 7}, table1 = {1, 4};
  auto write = [&](const std::vector<float>& qkv, BatchLayout& b) {
    cpu_kv_write(TensorView::of(const_cast<float*>(qkv.data()), {static_cast<int64_t>(b.slots.size()), 3 * e}),
                 b, layer, pool);
  };
  BatchLayout earlier;  // sequence 1's first 21 tokens
  earlier.seqs.push_back({0, 21, 0, table1.data()});
  for (int i = 0; i < 21; ++i) earlier.slots.push_back(table1[i / bs] * bs + i % bs);
  write(normal(21 * 3 * e, 2), earlier);
  BatchLayout b;
  b.seqs.push_back({0, 37, 0, table0.data()});
  b.seqs.push_back({37, 1, 21, table1.data()});
  for (int i = 0; i < 37; ++i) b.slots.push_back(table0[i / bs] * bs + i % bs);
  b.slots.push_back(table1[21 / bs] * bs + 21 % bs);
  const auto qkv = normal(38 * 3 * e, 3);
  write(qkv, b);
  std::vector<float> out(38 * e);
  cpu_paged_attention(TensorView::of(const_cast<float*>(qkv.data()), {38, 3 * e}), b, layer, pool,
                      TensorView::of(out.data(), {38, e}));
  return out;
}

TEST(KvDtype, PagedAttentionCloseToF32) {
  // Max abs error of attention outputs (inputs ~ N(0, 1)) against f32 pages.
  const struct {
    DType dtype;
    float tolerance;
  } cases[] = {{DType::bf16, 2e-2f}, {DType::f16, 3e-3f}, {DType::i8, 4e-2f}};
  for (int d : {8, 64}) {
    const auto ref = run_attention(DType::f32, 3, d, 1);
    for (const auto& c : cases) {
      const auto got = run_attention(c.dtype, 3, d, 1);
      float max_err = 0.0f;
      double mean_err = 0.0;
      for (size_t i = 0; i < ref.size(); ++i) {
        max_err = std::max(max_err, std::fabs(got[i] - ref[i]));
        mean_err += std::fabs(got[i] - ref[i]);
      }
      mean_err /= static_cast<double>(ref.size());
      EXPECT_LE(max_err, c.tolerance) << dtype_name(c.dtype) << " head_dim " << d;
      EXPECT_GT(max_err, 0.0f) << dtype_name(c.dtype);  // the pages really hold the dtype
      std::printf("  %-4s head_dim %2d: max |err| %.2e, mean %.2e\n", dtype_name(c.dtype), d,
                  max_err, mean_err);
    }
  }
}

// Prompt log-probs of the HF fixture with KV pages in dtype.
std::vector<float> prompt_logprobs(DType dtype) {
  WorkerOptions o;
  o.model_dir = KVMESH_TEST_DATA_DIR "/hf-gpt2-4l32d";
  o.n_threads = 2;
  o.cache.kv_dtype = dtype;
  o.cache.device_bytes = 8 << 20;
  auto w = Worker::create(o);
  EXPECT_TRUE(w.is_ok()) << w.status().to_string();
  if (!w.is_ok()) return {};
  std::vector<float> out;
  SeqWork s;
  for (int i = 0; i < 48; ++i) s.token_ids.push_back((464 + 733 * i) % 50257);
  s.block_table = {0, 1, 2, 3};
  s.prompt_logprobs = 0;
  s.next_prompt_token = 318;
  // Two chunks, so the second reads the first's pages back in the dtype.
  StepPlan plan;
  SeqWork first = s, second = s;
  first.token_ids.resize(24);
  first.next_prompt_token = s.token_ids[24];
  second.token_ids.erase(second.token_ids.begin(), second.token_ids.begin() + 24);
  second.n_past = 24;
  for (const SeqWork& chunk : {first, second}) {
    plan.seqs = {chunk};
    StepResult r;
    EXPECT_TRUE((*w)->execute(plan, &r).is_ok());
    for (const auto& p : r.seqs.at(0).prompt_logprobs) out.push_back(p.chosen.logprob);
  }
  return out;
}

TEST(KvDtype, ModelLogprobsCloseToF32) {
  const auto ref = prompt_logprobs(DType::f32);
  ASSERT_EQ(ref.size(), 48u);
  const struct {
    DType dtype;
    float tolerance;
  } cases[] = {{DType::bf16, 5e-4f}, {DType::f16, 1e-4f}, {DType::i8, 1e-3f}};
  for (const auto& c : cases) {
    const auto got = prompt_logprobs(c.dtype);
    ASSERT_EQ(got.size(), ref.size());
    float max_err = 0.0f;
    for (size_t i = 0; i < ref.size(); ++i) max_err = std::max(max_err, std::fabs(got[i] - ref[i]));
    EXPECT_LE(max_err, c.tolerance) << dtype_name(c.dtype);
    std::printf("  %-4s max |logprob err| %.2e over %zu prompt tokens\n", dtype_name(c.dtype),
                max_err, ref.size());
  }
}

}  // namespace
}  // namespace kvmesh
