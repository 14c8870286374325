// Every CUDA backend op but the matrix products (cuda_products_test) against its CPU twin on
// random inputs. Tolerances (max |gpu - cpu| / max(1, max |cpu|) per tensor): fp32 element-wise
// ops 1e-5; LayerNorm 1e-5; attention with f32 pages 1e-5, with bf16/f16 pages the same as CPU
// reading the same pages (pages are written by each backend's kv_write, then compared as bytes:
// identical); LayerNorm written as bf16 within one bf16 step (1/64 of the magnitude); sample_rows
// the host sampler's tokens and top ids, log-probs within 1e-5. Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "gpu/cuda_ops_fixture.h"
#include "sample_cases.h"
#include "disk_tier_fixture.h"
#include "temp_dir.h"
#include "worker/cuda/host_staging.h"
#include "worker/cuda/kernels.h"
#include "worker/cuda/op_times.h"
#include "worker/kv_store.h"

namespace kvmesh {
namespace {

// Overlapping launches are used from compute capability 9.0 on, where kvmesh's kernels are built for
// the device; below it the check says why not.
TEST_F(CudaOps, LaunchOverlapWorksFromComputeCapability9) {
  int major = 0;
  ASSERT_EQ(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0), cudaSuccess);
  const char* why = "";
  const bool works = launch_overlap_works(static_cast<cudaStream_t>(gpu_->native_stream()), &why);
  if (major >= 9) {
    EXPECT_TRUE(works) << why;
  } else {
    EXPECT_FALSE(works);
    EXPECT_NE(std::string(why).find("compute capability"), std::string::npos) << why;
  }
}

TEST_F(CudaOps, EmbedWithPositions) {
  const int64_t v = 97, e = 48, p = 40, n = 13;
  auto wte = random_values(v * e, 1), wpe = random_values(p * e, 2);
  std::vector<int32_t> tokens(n), positions(n);
  for (int64_t t = 0; t < n; ++t) {
    tokens[t] = static_cast<int32_t>((t * 37) % 120) + 10;  // some outside the shard [10, 107)
    positions[t] = static_cast<int32_t>((t * 7) % p);
  }
  std::vector<float> want(n * e);
  const auto wte_r = bf16_rounded(wte), wpe_r = bf16_rounded(wpe);
  TensorView wpe_c = TensorView::of(const_cast<float*>(wpe_r.data()), {p, e});
  cpu_->embed(TensorView::of(const_cast<float*>(wte_r.data()), {v, e}), 10, &wpe_c, tokens.data(),
              positions.data(), TensorView::of(want.data(), {n, e}));
  TensorView wpe_g = weight(wpe, p, e, true);
  TensorView out = device_poisoned(n, e);
  gpu_->embed(weight(wte, v, e, true), 10, &wpe_g, tokens.data(), positions.data(), out);
  EXPECT_LT(rel_error(host(out), want), 1e-6);
}

// Rows of 300 and 1600 (held in registers, 2 and 8 values a thread) and of 9000 (past what a block
// holds: the kernel that loops over memory).
TEST_F(CudaOps, LayerNormInPlaceAndNot) {
  for (const int64_t e : {300, 1600, 9000}) {
    const int64_t n = 9;
    auto x = random_values(n * e, 3, 3.0f), w = random_values(e, 4), b = random_values(e, 5);
    std::vector<float> want(n * e);
    TensorView wv = TensorView::of(w.data(), {1, e}), bv = TensorView::of(b.data(), {1, e});
    cpu_->layer_norm(TensorView::of(x.data(), {n, e}), wv, bv, 1e-5f, TensorView::of(want.data(), {n, e}));
    TensorView xg = device(x, n, e), out = device_poisoned(n, e);
    TensorView wg = weight(w, 1, e, false), bg = weight(b, 1, e, false);
    gpu_->layer_norm(xg, wg, bg, 1e-5f, out);
    EXPECT_LT(rel_error(host(out), want), 1e-5) << "rows of " << e;
    gpu_->layer_norm(xg, wg, bg, 1e-5f, xg);
    EXPECT_LT(rel_error(host(xg), want), 1e-5) << "rows of " << e << ", in place";
  }
}

// LayerNorm straight into the bf16 operand of a matrix product: the CPU's values rounded to bf16,
// up to one bf16 step where the fp32 results straddle a rounding boundary.
TEST_F(CudaOps, LayerNormIntoBf16Operand) {
  const int64_t n = 7, e = 1600;
  auto x = random_values(n * e, 13, 3.0f), w = random_values(e, 14), b = random_values(e, 15);
  std::vector<float> want(n * e);
  cpu_->layer_norm(TensorView::of(x.data(), {n, e}), TensorView::of(w.data(), {1, e}),
                   TensorView::of(b.data(), {1, e}), 1e-5f, TensorView::of(want.data(), {n, e}));
  ASSERT_EQ(gpu_->matmul_input_dtype(), DType::bf16);
  TensorView out = device_poisoned(n, e);
  out.dtype = DType::bf16;
  gpu_->layer_norm(device(x, n, e), weight(w, 1, e, false), weight(b, 1, e, false), 1e-5f, out);
  EXPECT_LT(rel_error(host_bf16(out), bf16_rounded(want)), 1.0 / 64);
}

// The fused residual + LayerNorm for rows held in registers and rows past that (9000), without a
// bias too: x exactly as bias + residual leaves it, out as LayerNorm of it.
TEST_F(CudaOps, ResidualLayerNormHeldAndNot) {
  for (const int64_t e : {768, 9000}) {
    for (const bool with_bias : {true, false}) {
      const int64_t n = 3;
      auto x = random_values(n * e, 31), y = random_values(n * e, 32), b = random_values(e, 33);
      auto lw = random_values(e, 34), lb = random_values(e, 35);
      if (!with_bias) std::fill(b.begin(), b.end(), 0.0f);
      std::vector<float> x_want = x, y_copy = y, ln_want(n * e);
      cpu_->add_bias_residual_layer_norm(TensorView::of(x_want.data(), {n, e}), TensorView::of(y_copy.data(), {n, e}),
                                         TensorView::of(b.data(), {1, e}), TensorView::of(lw.data(), {1, e}),
                                         TensorView::of(lb.data(), {1, e}), 1e-5f,
                                         TensorView::of(ln_want.data(), {n, e}));
      TensorView xg = device(x, n, e), yg = device(y, n, e), ln = device_poisoned(n, e);
      const TensorView bg = weight(b, 1, e, false);
      gpu_->add_bias_residual_layer_norm(xg, yg, with_bias ? bg : TensorView{}, weight(lw, 1, e, false),
                                         weight(lb, 1, e, false), 1e-5f, ln);
      EXPECT_EQ(host(xg), x_want) << "rows of " << e << (with_bias ? "" : ", no bias");
      EXPECT_LT(rel_error(host(ln), ln_want), 1e-5) << "rows of " << e << (with_bias ? "" : ", no bias");
    }
  }
}

// The fused residual + LayerNorm: x exactly as bias + residual leaves it, out as LayerNorm of it;
// and a matrix product on that bf16 operand equals the product on fp32 activations (cast inside).
TEST_F(CudaOps, ResidualLayerNormAndProductOnNarrowOperand) {
  const int64_t n = 5, e = 768, out_c = 320;
  auto x = random_values(n * e, 16), y = random_values(n * e, 17), b = random_values(e, 18);
  auto lw = random_values(e, 19), lb = random_values(e, 20), w = random_values(e * out_c, 21, 0.05f);
  std::vector<float> x_want = x, y_copy = y, ln_want(n * e);
  cpu_->add_bias_residual_layer_norm(TensorView::of(x_want.data(), {n, e}), TensorView::of(y_copy.data(), {n, e}),
                                     TensorView::of(b.data(), {1, e}), TensorView::of(lw.data(), {1, e}),
                                     TensorView::of(lb.data(), {1, e}), 1e-5f, TensorView::of(ln_want.data(), {n, e}));
  TensorView xg = device(x, n, e), yg = device(y, n, e), ln = device_poisoned(n, e);
  TensorView lwg = weight(lw, 1, e, false), lbg = weight(lb, 1, e, false);
  gpu_->add_bias_residual_layer_norm(xg, yg, weight(b, 1, e, false), lwg, lbg, 1e-5f, ln);
  EXPECT_EQ(host(xg), x_want) << "x += y + b, the same float additions as the CPU";
  EXPECT_LT(rel_error(host(ln), ln_want), 1e-5);

  TensorView narrow = device_poisoned(n, e);
  narrow.dtype = DType::bf16;
  gpu_->add_bias_residual_layer_norm(device(x, n, e), yg, weight(b, 1, e, false), lwg, lbg, 1e-5f, narrow);
  const TensorView wg = weight(w, e, out_c, true);
  TensorView from_narrow = device_poisoned(n, out_c), from_f32 = device_poisoned(n, out_c);
  gpu_->linear(narrow, wg, nullptr, from_narrow);
  gpu_->linear(ln, wg, nullptr, from_f32);
  EXPECT_EQ(host(from_narrow), host(from_f32)) << "the bf16 operand is the fp32 one cast";
}

TEST_F(CudaOps, BiasGeluAndBiasResidual) {
  const int64_t n = 7, e = 300;
  auto y = random_values(n * e, 6, 2.0f), b = random_values(e, 7), x = random_values(n * e, 8);
  for (Activation act : {Activation::gelu_new, Activation::gelu, Activation::gelu_fast, Activation::relu}) {
    std::vector<float> want = y;
    TensorView bv = TensorView::of(b.data(), {1, e});
    cpu_->add_bias(TensorView::of(want.data(), {n, e}), bv);
    cpu_->activation(TensorView::of(want.data(), {n, e}), act);
    TensorView yg = device(y, n, e);
    gpu_->add_bias(yg, weight(b, 1, e, false));
    gpu_->activation(yg, act);
    EXPECT_LT(rel_error(host(yg), want), 1e-5) << activation_name(act);
  }
  std::vector<float> want_x = x, y_copy = y;
  cpu_->add_bias_residual(TensorView::of(want_x.data(), {n, e}), TensorView::of(y_copy.data(), {n, e}),
                          TensorView::of(b.data(), {1, e}));
  TensorView xg = device(x, n, e), yg = device(y, n, e);
  gpu_->add_bias_residual(xg, yg, weight(b, 1, e, false));
  EXPECT_LT(rel_error(host(xg), want_x), 1e-6);
}

TEST_F(CudaOps, GatherRowsAndRowStats) {
  const int64_t t = 6, e = 40, v = 50257;
  auto x = random_values(t * e, 13);
  const std::vector<int32_t> rows = {5, 0, 3};
  std::vector<float> want(rows.size() * e);
  cpu_->gather_rows(TensorView::of(x.data(), {t, e}), rows, TensorView::of(want.data(), {3, e}));
  TensorView out = device_poisoned(3, e);
  gpu_->gather_rows(device(x, t, e), rows, out);
  EXPECT_EQ(host(out), want);

  const int rs = 7;
  auto logits = random_values(rs * v, 14, 4.0f);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  logits[2 * v + 777] = 100.0f;  // a clear winner
  logits[3 * v + 5] = logits[3 * v + 9] = 50.0f;  // a tie: the first index wins
  logits[4 * v + 5] = nan;  // a later NaN never wins: the max at 517 does
  logits[4 * v + 517] = 100.0f;
  logits[5 * v] = nan;  // a NaN first logit is the max (nothing compares greater)
  logits[5 * v + 517] = 100.0f;
  for (int64_t j = 0; j < v; ++j) logits[6 * v + j] = -std::numeric_limits<float>::infinity();
  std::vector<RowStats> want_stats(rs), got(rs);
  cpu_->row_stats(TensorView::of(logits.data(), {rs, v}), want_stats.data());
  gpu_->row_stats(device(logits, rs, v), got.data());
  ASSERT_TRUE(gpu_->status().is_ok()) << gpu_->status().to_string();
  EXPECT_EQ(want_stats[4].argmax, 517);
  EXPECT_EQ(want_stats[5].argmax, 0);
  EXPECT_EQ(want_stats[6].argmax, 0);
  for (int i = 0; i < rs; ++i) {
    EXPECT_EQ(got[i].argmax, want_stats[i].argmax) << "row " << i;
    // Rows 4 to 6 have NaN log-sum-exps (a NaN logit; -inf - -inf), row 5 a NaN max.
    if (std::isnan(want_stats[i].max))
      EXPECT_TRUE(std::isnan(got[i].max)) << "row " << i;
    else
      EXPECT_EQ(got[i].max, want_stats[i].max) << "row " << i;
    if (std::isnan(want_stats[i].log_sum_exp))
      EXPECT_TRUE(std::isnan(got[i].log_sum_exp)) << "row " << i;
    else
      EXPECT_NEAR(got[i].log_sum_exp, want_stats[i].log_sum_exp, 1e-4) << "row " << i;
  }
}

// sample_rows: the same tokens and top ids as the host sampler (CPU backend), log-probs within 1e-5.
void expect_samples_match(const std::vector<RowSample>& got, const std::vector<RowSample>& want,
                          const std::vector<RowDraw>& draws, const std::string& where) {
  for (size_t i = 0; i < want.size(); ++i) {
    const std::string at = where + " row " + std::to_string(i) + " (top_k " +
                           std::to_string(draws[i].params.top_k) + ", T " +
                           std::to_string(draws[i].params.temperature) + ", n_top " +
                           std::to_string(draws[i].n_top) + ")";
    EXPECT_EQ(got[i].token, want[i].token) << at;
    EXPECT_EQ(got[i].logprobs.chosen.token, want[i].logprobs.chosen.token) << at;
    EXPECT_NEAR(got[i].logprobs.chosen.logprob, want[i].logprobs.chosen.logprob, 1e-5) << at;
    ASSERT_EQ(got[i].logprobs.top.size(), want[i].logprobs.top.size()) << at;
    for (size_t j = 0; j < want[i].logprobs.top.size(); ++j) {
      EXPECT_EQ(got[i].logprobs.top[j].token, want[i].logprobs.top[j].token) << at << " top " << j;
      EXPECT_NEAR(got[i].logprobs.top[j].logprob, want[i].logprobs.top[j].logprob, 1e-5)
          << at << " top " << j;
    }
  }
}

TEST_F(CudaOps, SampleRowsMatchesTheHostSampler) {
  // Every kind of draw mixed in each call, several rows with ties, small vocabularies, GPT-2's, and
  // one longer than the tiles whose sums a row keeps (64 of 2048 candidates: every walk scans every
  // tile, where for GPT-2's vocabulary the walks step over whole tiles).
  for (const int64_t v : {1, 7, 1000, 50257, 140000}) {
    const int n_rows = 24, calls = v == 140000 ? 2 : v == 50257 ? 8 : 13;
    for (int call = 0; call < calls; ++call) {
      std::vector<float> logits = testing::logits_with_ties(n_rows, v, 500 + static_cast<uint32_t>(call));
      const std::vector<RowDraw> draws = testing::draw_mix(n_rows, call);
      std::vector<RowSample> want(draws.size()), got(draws.size());
      cpu_->sample_rows(TensorView::of(logits.data(), {n_rows, v}), draws, want.data());
      gpu_->sample_rows(device(logits, n_rows, v), draws, got.data());
      ASSERT_TRUE(gpu_->status().is_ok()) << gpu_->status().to_string();
      expect_samples_match(got, want, draws, "v " + std::to_string(v) + " call " + std::to_string(call));
    }
  }
}

// Logit biases, penalties and bans (add_edits) on most rows of every kind of draw, greedy ones too:
// the draw is made from the edited copy, the log-probs (top n_top too) from the raw logits.
TEST_F(CudaOps, SampleRowsWithLogitEditsMatchesTheHostSampler) {
  for (const int64_t v : {7, 1000, 50257}) {
    const int n_rows = 24, calls = v == 50257 ? 4 : 8;
    for (int call = 0; call < calls; ++call) {
      std::vector<float> logits = testing::logits_with_ties(n_rows, v, 700 + static_cast<uint32_t>(call));
      std::vector<RowDraw> draws = testing::draw_mix(n_rows, call);
      testing::add_edits(draws, logits, v, 800 + static_cast<uint32_t>(call));
      std::vector<RowSample> want(draws.size()), got(draws.size());
      cpu_->sample_rows(TensorView::of(logits.data(), {n_rows, v}), draws, want.data());
      gpu_->sample_rows(device(logits, n_rows, v), draws, got.data());
      ASSERT_TRUE(gpu_->status().is_ok()) << gpu_->status().to_string();
      expect_samples_match(got, want, draws, "edits, v " + std::to_string(v) + " call " + std::to_string(call));
    }
  }
}

// Greedy rows that want at most the token's own log-prob sort nothing (the usual decode step): the
// first argmax and its log-prob, at GPT-2's vocabulary; then the same after a larger sorted call
// left bigger scratch behind, on fewer rows of a smaller vocabulary.
TEST_F(CudaOps, SampleRowsGreedyWithoutSort) {
  for (const auto& [n_rows, v] : {std::pair<int, int64_t>{12, 50257}, {5, 1000}}) {
    if (v == 1000) {  // a sorted call first
      const std::vector<float> big = testing::logits_with_ties(24, 50257, 903);
      const std::vector<RowDraw> mix = testing::draw_mix(24, 2);
      std::vector<RowSample> ignored(mix.size());
      gpu_->sample_rows(device(big, 24, 50257), mix, ignored.data());
    }
    const std::vector<float> logits = testing::logits_with_ties(n_rows, v, 901 + static_cast<uint32_t>(v));
    std::vector<RowDraw> draws(static_cast<size_t>(n_rows));
    for (int i = 0; i < n_rows; ++i) {
      draws[i].params.temperature = 0.0f;
      draws[i].position = i;
      draws[i].n_top = i % 2 == 0 ? -1 : 0;
    }
    std::vector<RowSample> want(draws.size()), got(draws.size());
    cpu_->sample_rows(TensorView::of(const_cast<float*>(logits.data()), {n_rows, v}), draws, want.data());
    gpu_->sample_rows(device(logits, n_rows, v), draws, got.data());
    ASSERT_TRUE(gpu_->status().is_ok()) << gpu_->status().to_string();
    expect_samples_match(got, want, draws, "greedy, v " + std::to_string(v));
  }
}

// NaN logits pick the host's greedy token: a NaN first logit is the argmax, a later NaN never is, a
// row of NaNs gives token 0.
TEST_F(CudaOps, SampleRowsGreedyOverNaNs) {
  const int64_t v = 50257;
  const int n_rows = 3;
  std::vector<float> logits = testing::logits_with_ties(n_rows, v, 905);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  logits[0] = nan;
  logits[517] = 100.0f;
  logits[v + 5] = nan;
  logits[v + 517] = 100.0f;
  std::fill(logits.begin() + 2 * v, logits.end(), nan);
  std::vector<RowDraw> draws(static_cast<size_t>(n_rows));
  for (int i = 0; i < n_rows; ++i) {
    draws[i].params.temperature = 0.0f;
    draws[i].position = i;
  }
  std::vector<RowSample> want(draws.size()), got(draws.size());
  cpu_->sample_rows(TensorView::of(logits.data(), {n_rows, v}), draws, want.data());
  gpu_->sample_rows(device(logits, n_rows, v), draws, got.data());
  ASSERT_TRUE(gpu_->status().is_ok()) << gpu_->status().to_string();
  const int32_t tokens[] = {0, 517, 0};
  for (int i = 0; i < n_rows; ++i) {
    EXPECT_EQ(want[i].token, tokens[i]) << "row " << i;
    EXPECT_EQ(got[i].token, want[i].token) << "row " << i;
  }
}

TEST_F(CudaOps, SampleRowsOverManySeeds) {
  // One row of GPT-2-sized logits drawn with 48 seeds per kind of draw: the draws spread over many
  // candidates, and each must be the host's.
  const int64_t v = 50257;
  const int n_rows = 48;
  const std::vector<float> one = testing::logits_with_ties(1, v, 77);
  std::vector<float> logits;
  for (int i = 0; i < n_rows; ++i) logits.insert(logits.end(), one.begin(), one.end());
  TensorView rows = device(logits, n_rows, v);
  int kind = 0;
  for (const SamplingParams& params : testing::sampling_mix()) {
    std::vector<RowDraw> draws(n_rows);
    for (int i = 0; i < n_rows; ++i) {
      draws[i].params = params;
      draws[i].params.seed = static_cast<uint64_t>(i) * 7919u + static_cast<uint64_t>(kind);
      draws[i].position = i % 5;
      draws[i].n_top = i % 3 == 0 ? 32 : -1;
    }
    std::vector<RowSample> want(draws.size()), got(draws.size());
    cpu_->sample_rows(TensorView::of(logits.data(), {n_rows, v}), draws, want.data());
    gpu_->sample_rows(rows, draws, got.data());
    ASSERT_TRUE(gpu_->status().is_ok()) << gpu_->status().to_string();
    expect_samples_match(got, want, draws, "kind " + std::to_string(kind));
    ++kind;
  }
}

// A ragged batch: prefill chunks after cached tokens (tiled attention), a fresh prompt, and decodes
// of long contexts (split over blocks), over shuffled pages.
struct PagedCase {
  BatchLayout batch;
  std::vector<std::vector<int32_t>> tables;
  int64_t n_rows = 0;
};

// Sequences as (n_past, n_tokens): prefill chunks of one tile (25, 17 rows) and of three (150 rows
// after 100 cached), decodes of long contexts (split), and a chunk too short for tiles (5 rows).
using SeqShapes = std::vector<std::pair<int32_t, int32_t>>;
const SeqShapes kMixedSeqs = {{40, 25}, {0, 17}, {1500, 1}, {700, 1}, {3, 1}, {100, 150}, {9, 5}};

// n_pages must be prime to 7919 (the pages are a permutation of the pool).
PagedCase make_case(int32_t block_size, int32_t n_pages, const SeqShapes& seqs = kMixedSeqs) {
  PagedCase c;
  c.batch.block_size = block_size;
  std::vector<int32_t> free_pages(n_pages);
  for (int32_t i = 0; i < n_pages; ++i) free_pages[i] = (i * 7919) % n_pages;  // a permutation (n_pages prime)
  size_t next = 0;
  c.tables.resize(seqs.size());
  for (size_t s = 0; s < seqs.size(); ++s) {
    const auto [n_past, n_tokens] = seqs[s];
    const int32_t pages = (n_past + n_tokens + block_size - 1) / block_size;
    for (int32_t p = 0; p < pages; ++p) c.tables[s].push_back(free_pages[next++]);
  }
  for (size_t s = 0; s < seqs.size(); ++s) {
    const auto [n_past, n_tokens] = seqs[s];
    c.batch.seqs.push_back({static_cast<int32_t>(c.n_rows), n_tokens, n_past, c.tables[s].data()});
    for (int32_t i = 0; i < n_tokens; ++i) {
      const int32_t pos = n_past + i;
      c.batch.positions.push_back(pos);
      c.batch.slots.push_back(c.tables[s][pos / block_size] * block_size + pos % block_size);
    }
    c.n_rows += n_tokens;
  }
  return c;
}

// Fills the context before each sequence's new tokens with random K/V (one batch of all cached
// positions written by the CPU), then copies the pool to the GPU.
void fill_history(Backend& cpu, const PagedCase& c, KvPoolView pool, int32_t layer, int64_t e, uint32_t seed) {
  BatchLayout history;
  history.block_size = c.batch.block_size;
  for (size_t s = 0; s < c.batch.seqs.size(); ++s) {
    const SeqSpan& span = c.batch.seqs[s];
    for (int32_t pos = 0; pos < span.n_past; ++pos) {
      history.positions.push_back(pos);
      history.slots.push_back(c.tables[s][pos / pool.block_size] * pool.block_size + pos % pool.block_size);
    }
  }
  const auto n = static_cast<int64_t>(history.slots.size());
  auto qkv = random_values(static_cast<size_t>(n * 3 * e), seed);
  cpu.kv_write(TensorView::of(qkv.data(), {n, 3 * e}), history, layer, pool);
}

// one_op: the GPU writes and attends in kv_write_attention (for decode rows only, one kernel).
// spec: the attention's scale and window (both backends get it).
void check_paged(CudaOps* self, Backend& cpu, Backend& gpu, DType kv_dtype, int32_t head_dim = 64,
                 const SeqShapes& seqs = kMixedSeqs, int32_t n_pages = 211, bool one_op = false,
                 const AttentionSpec& spec = {}) {
  const int32_t block_size = 16, n_layers = 2, n_heads = 3, layer = 1;
  const int64_t e = n_heads * head_dim;
  PagedCase c = make_case(block_size, n_pages, seqs);
  KvPoolView pool{nullptr, kv_dtype, n_pages, n_layers, block_size, n_heads, head_dim};
  const size_t pool_bytes = static_cast<size_t>(pool.page_bytes()) * n_pages;
  std::vector<uint8_t> cpu_pool(pool_bytes, 0);
  pool.data = cpu_pool.data();
  fill_history(cpu, c, pool, layer, e, 21);
  auto dev_pool = gpu.alloc(pool_bytes);
  ASSERT_TRUE(dev_pool.is_ok());
  gpu.upload(dev_pool->data(), cpu_pool.data(), pool_bytes);
  KvPoolView gpool = pool;
  gpool.data = dev_pool->data();

  auto qkv = random_values(static_cast<size_t>(c.n_rows * 3 * e), 22);
  std::vector<float> want(static_cast<size_t>(c.n_rows * e));
  cpu.kv_write(TensorView::of(qkv.data(), {c.n_rows, 3 * e}), c.batch, layer, pool);
  cpu.attention(TensorView::of(qkv.data(), {c.n_rows, 3 * e}), c.batch, layer, pool,
                TensorView::of(want.data(), {c.n_rows, e}), spec);

  TensorView qkv_g = self->device(qkv, c.n_rows, 3 * e), out = self->device_poisoned(c.n_rows, e);
  gpu.prepare_batch(c.batch);
  if (one_op) {
    gpu.kv_write_attention(qkv_g, c.batch, layer, gpool, out, spec);
  } else {
    gpu.kv_write(qkv_g, c.batch, layer, gpool);
    gpu.attention(qkv_g, c.batch, layer, gpool, out, spec);
  }
  std::vector<uint8_t> gpu_pool(pool_bytes);
  gpu.download(gpu_pool.data(), dev_pool->data(), pool_bytes);
  ASSERT_TRUE(gpu.status().is_ok()) << gpu.status().to_string();
  EXPECT_TRUE(gpu_pool == cpu_pool) << "pages written by kv_write differ (" << dtype_name(kv_dtype) << ")";
  const std::vector<float> got = self->host(out);
  EXPECT_LT(rel_error(got, want), 1e-5) << dtype_name(kv_dtype);
  // Into the bf16 operand of the next product: the fp32 results, rounded.
  TensorView narrow = self->device_poisoned(c.n_rows, e);
  narrow.dtype = DType::bf16;
  gpu.attention(qkv_g, c.batch, layer, gpool, narrow, spec);
  EXPECT_EQ(self->host_bf16(narrow), bf16_rounded(got)) << dtype_name(kv_dtype);
}

TEST_F(CudaOps, KvWriteAndPagedAttentionF32Pages) { check_paged(this, *cpu_, *gpu_, DType::f32); }
TEST_F(CudaOps, KvWriteAndPagedAttentionBf16Pages) { check_paged(this, *cpu_, *gpu_, DType::bf16); }
TEST_F(CudaOps, KvWriteAndPagedAttentionF16Pages) { check_paged(this, *cpu_, *gpu_, DType::f16); }
// Every context short enough that no row is split (the row kernel writes its output directly).
TEST_F(CudaOps, KvWriteAndPagedAttentionUnsplit) {
  check_paged(this, *cpu_, *gpu_, DType::bf16, 64, {{40, 25}, {0, 17}, {300, 1}, {3, 1}, {9, 5}});
}
// Heads of 80: the tiled prefill kernel declines, so the row kernel takes the prefill chunks too.
TEST_F(CudaOps, KvWriteAndPagedAttentionHeadDim80) { check_paged(this, *cpu_, *gpu_, DType::bf16, 80); }
// A decode past 64 splits of 256 positions: the splits widen so that every key is still seen.
TEST_F(CudaOps, KvWriteAndPagedAttentionPast16kPositions) {
  check_paged(this, *cpu_, *gpu_, DType::bf16, 64, {{17000, 1}, {5, 1}}, 1069);
}
// Decode rows only (long contexts split, short ones, a first token): kv_write_attention writes each
// row's K and V from the attention kernel; the pages and outputs are the CPU's kv_write + attention.
const SeqShapes kDecodeSeqs = {{1500, 1}, {700, 1}, {3, 1}, {0, 1}, {40, 1}, {15, 1}};
TEST_F(CudaOps, KvWriteAttentionInOneKernelForDecodeRowsBf16) {
  check_paged(this, *cpu_, *gpu_, DType::bf16, 64, kDecodeSeqs, 211, true);
}
TEST_F(CudaOps, KvWriteAttentionInOneKernelForDecodeRowsF16) {
  check_paged(this, *cpu_, *gpu_, DType::f16, 64, kDecodeSeqs, 211, true);
}
TEST_F(CudaOps, KvWriteAttentionInOneKernelForDecodeRowsF32HeadDim80) {
  check_paged(this, *cpu_, *gpu_, DType::f32, 80, kDecodeSeqs, 211, true);
}
// Each lane loads its consecutive elements of a head at once where the head's width is a multiple
// of them, element by element where it is not: widths of each lane count (2, 4 and 8 elements), a
// multiple and not, decode rows (one kernel) and prefill chunks (the row kernel takes them).
TEST_F(CudaOps, PagedAttentionAtHeadWidthsOfEveryLaneLoad) {
  for (const int32_t head_dim : {50, 66, 128, 200, 250}) {
    SCOPED_TRACE("head_dim " + std::to_string(head_dim));
    check_paged(this, *cpu_, *gpu_, DType::bf16, head_dim, kDecodeSeqs, 211, true);
    check_paged(this, *cpu_, *gpu_, DType::f32, head_dim, {{40, 25}, {3, 1}}, 211, false);
  }
}
// A batch with prefill chunks: the one op is the two ops (the tiles read rows the chunk writes).
TEST_F(CudaOps, KvWriteAttentionOverPrefillChunks) {
  check_paged(this, *cpu_, *gpu_, DType::bf16, 64, kMixedSeqs, 211, true);
}

// GPT-Neo's attention: unscaled scores, local layers over the last `window` positions only: tiled
// prefill chunks (windows inside one staged block of keys and across blocks), the row kernel (head
// width 80), split long decodes (a window wider than one split, and narrower), in one kernel too.
TEST_F(CudaOps, WindowedUnscaledPagedAttention) {
  for (const int32_t window : {1, 7, 100, 600}) {
    SCOPED_TRACE("window " + std::to_string(window));
    const AttentionSpec spec{1.0f, window};
    check_paged(this, *cpu_, *gpu_, DType::f32, 64, kMixedSeqs, 211, false, spec);
    check_paged(this, *cpu_, *gpu_, DType::bf16, 80, kMixedSeqs, 211, false, spec);
    check_paged(this, *cpu_, *gpu_, DType::bf16, 64, kDecodeSeqs, 211, true, spec);
  }
  check_paged(this, *cpu_, *gpu_, DType::f32, 64, kMixedSeqs, 211, true, AttentionSpec{0.5f, 0});  // scaled, global
}

// A decode graph's ops: the batch padded to more rows (which write no page), attention split for
// a context bound instead of the batch's longest context, recorded once and replayed twice on new
// inputs staged at the same addresses; the real rows equal the CPU's eager ops each time. one_op:
// recorded as kv_write_attention.
void check_padded_replay(CudaOps* self, Backend& cpu, Backend& gpu, const SeqShapes& seqs, bool one_op) {
  const int32_t block_size = 16, n_pages = 211, n_layers = 2, n_heads = 3, head_dim = 64, layer = 0;
  const int64_t e = n_heads * head_dim;
  PagedCase c = make_case(block_size, n_pages, seqs);
  KvPoolView pool{nullptr, DType::bf16, n_pages, n_layers, block_size, n_heads, head_dim};
  const size_t pool_bytes = static_cast<size_t>(pool.page_bytes()) * n_pages;
  std::vector<uint8_t> cpu_pool(pool_bytes, 0);
  pool.data = cpu_pool.data();
  fill_history(cpu, c, pool, layer, e, 31);
  auto dev_pool = gpu.alloc(pool_bytes);
  ASSERT_TRUE(dev_pool.is_ok());
  gpu.upload(dev_pool->data(), cpu_pool.data(), pool_bytes);
  KvPoolView gpool = pool;
  gpool.data = dev_pool->data();

  BatchLayout padded = c.batch;
  padded.padded_rows = static_cast<int32_t>(c.n_rows + 5);
  padded.max_context = 2048;
  const int64_t rows = padded.padded_rows;
  TensorView qkv_g = self->device(random_values(static_cast<size_t>(rows * 3 * e), 32), rows, 3 * e);
  TensorView out = self->device_poisoned(rows, e);
  gpu.prepare_batch(padded);
  ASSERT_TRUE(gpu.begin_capture(1).is_ok());
  if (one_op) {
    gpu.kv_write_attention(qkv_g, padded, layer, gpool, out);
  } else {
    gpu.kv_write(qkv_g, padded, layer, gpool);
    gpu.attention(qkv_g, padded, layer, gpool, out);
  }
  const Status recorded = gpu.end_capture();
  ASSERT_TRUE(recorded.is_ok()) << recorded.to_string();
  for (uint32_t round = 0; round < 2; ++round) {
    auto qkv = random_values(static_cast<size_t>(rows * 3 * e), 40 + round);
    gpu.upload(qkv_g.data, qkv.data(), qkv.size() * sizeof(float));
    ASSERT_TRUE(gpu.replay(1).is_ok());
    std::vector<float> want(static_cast<size_t>(c.n_rows * e));
    cpu.kv_write(TensorView::of(qkv.data(), {c.n_rows, 3 * e}), c.batch, layer, pool);
    cpu.attention(TensorView::of(qkv.data(), {c.n_rows, 3 * e}), c.batch, layer, pool,
                    TensorView::of(want.data(), {c.n_rows, e}));
    std::vector<uint8_t> gpu_pool(pool_bytes);
    gpu.download(gpu_pool.data(), dev_pool->data(), pool_bytes);
    ASSERT_TRUE(gpu.status().is_ok()) << gpu.status().to_string();
    EXPECT_TRUE(gpu_pool == cpu_pool) << "round " << round << ": pages differ (padded rows must write none)";
    std::vector<float> got = self->host(out);
    got.resize(want.size());  // the padded rows' outputs mean nothing
    EXPECT_LT(rel_error(got, want), 1e-5) << "round " << round;
  }
}

TEST_F(CudaOps, PaddedBatchRecordedAndReplayed) { check_padded_replay(this, *cpu_, *gpu_, kMixedSeqs, false); }
// A decode graph as the model records it: decode rows only, K and V written by the attention kernel.
TEST_F(CudaOps, PaddedDecodeBatchRecordedAndReplayedInOneKernel) {
  check_padded_replay(this, *cpu_, *gpu_, kDecodeSeqs, true);
}

// Op timing (op_times.h): each op outside a graph recording is one call under its name (a product's
// with its shape and weight bytes), an op inside a recording is not timed but each replay is, and
// the hold that keeps the device ahead of the host is in no op's time. Nothing is counted before
// timing is on or after it is off.
TEST_F(CudaOps, OpTimesCountEachOpOnceOutsideRecordings) {
  struct TimingOff {
    ~TimingOff() { set_cuda_op_timing(false); }
  } timing_off;
  const int64_t n = 4, k = 64, cols = 32;
  const double hold_s = 0.4;
  TensorView x = device(random_values(n * k, 1), n, k), out = device_poisoned(n, k);
  TensorView wg = weight(random_values(k, 2), 1, k, false), bg = weight(random_values(k, 3), 1, k, false);
  TensorView w = weight(random_values(k * cols, 4), k, cols, true), product = device_poisoned(n, cols);
  gpu_->layer_norm(x, wg, bg, 1e-5f, out);  // before timing is on
  ASSERT_TRUE(gpu_->status().is_ok());
  (void)take_cuda_op_times();

  set_cuda_op_timing(true, hold_s);
  gpu_->layer_norm(x, wg, bg, 1e-5f, out);
  gpu_->add(out, x);
  gpu_->linear(x, w, nullptr, product);
  gpu_->layer_norm(x, wg, bg, 1e-5f, out);
  ASSERT_TRUE(gpu_->begin_capture(7).is_ok());
  gpu_->layer_norm(out, wg, bg, 1e-5f, out);
  ASSERT_TRUE(gpu_->end_capture().is_ok());
  ASSERT_TRUE(gpu_->replay(7).is_ok());
  ASSERT_TRUE(gpu_->replay(7).is_ok());
  ASSERT_TRUE(gpu_->status().is_ok()) << gpu_->status().to_string();
  const OpTimes times = take_cuda_op_times();
  set_cuda_op_timing(false);
  gpu_->layer_norm(x, wg, bg, 1e-5f, out);  // after timing is off
  ASSERT_TRUE(gpu_->status().is_ok());
  EXPECT_TRUE(take_cuda_op_times().ops.empty());

  std::map<std::string, int64_t> calls;
  double seconds = 0.0;
  for (const auto& [op, t] : times.ops) {
    calls[op] = t.calls;
    seconds += t.seconds;
    EXPECT_GE(t.seconds, 0.0) << op;
  }
  const std::map<std::string, int64_t> want = {
      {"layer_norm", 2}, {"add", 1}, {"linear 64x32", 1}, {"graph replay", 2}};
  EXPECT_EQ(calls, want);
  EXPECT_DOUBLE_EQ(times.ops.at("linear 64x32").weight_bytes, static_cast<double>(k * cols * 2));
  EXPECT_GE(times.timelines, 1);
  EXPECT_LT(seconds, hold_s / 2) << "the hold of " << hold_s << " s was counted as an op's time";
}

TEST_F(CudaOps, CopyPagesAndTierMoves) {
  KvPoolView pool{nullptr, DType::bf16, 8, 2, 16, 2, 64};
  const size_t page = static_cast<size_t>(pool.page_bytes());
  std::vector<uint8_t> bytes(page * 8);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 31 + 7);
  auto dev = gpu_->page_memory().alloc_device(bytes.size());
  auto host_pool = gpu_->page_memory().alloc_host(page * 2);
  ASSERT_TRUE(dev.is_ok() && host_pool.is_ok());
  gpu_->upload(dev->data(), bytes.data(), bytes.size());
  pool.data = dev->data();
  gpu_->copy_pages(pool, {{1, 6}});
  PageMemory& m = gpu_->page_memory();
  // To the host and straight back (copies run in order), then the host reads the host slot.
  ASSERT_TRUE(m.copy_to_host(host_pool->data(), pool.page_ptr(6), page).is_ok());
  ASSERT_TRUE(m.copy_to_device(pool.page_ptr(2), host_pool->data(), page).is_ok());
  ASSERT_TRUE(m.fence().is_ok());
  ASSERT_TRUE(m.wait_copies().is_ok());
  EXPECT_EQ(std::memcmp(host_pool->data(), bytes.data() + page, page), 0);
  std::vector<uint8_t> back(page);
  gpu_->download(back.data(), pool.page_ptr(2), page);
  EXPECT_EQ(std::memcmp(back.data(), bytes.data() + page, page), 0);
}

// The upload ring: more uploads than it has slots, with no wait between them and the host
// source changed after each; every one must arrive as it was when issued (a slot is refilled only
// once its earlier copy has run).
TEST_F(CudaOps, StagedUploadsArriveAsTheyWereWhenIssued) {
  constexpr int kUploads = 20;
  constexpr size_t kInts = 1000;
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  auto dev = gpu_->alloc(kUploads * kInts * sizeof(int32_t));
  ASSERT_TRUE(dev.is_ok());
  auto* ints = static_cast<int32_t*>(dev->data());
  {
    HostStaging staging;
    std::vector<int32_t> host(kInts);
    for (int u = 0; u < kUploads; ++u) {
      for (size_t i = 0; i < kInts; ++i) host[i] = static_cast<int32_t>(u * 100000 + i);
      ASSERT_TRUE(staging.upload(ints + u * kInts, host.data(), kInts * sizeof(int32_t), stream).is_ok());
    }
    std::fill(host.begin(), host.end(), -1);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  }
  ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
  std::vector<int32_t> got(kUploads * kInts);
  gpu_->download(got.data(), ints, got.size() * sizeof(int32_t));
  int wrong = 0;
  for (int u = 0; u < kUploads; ++u)
    for (size_t i = 0; i < kInts; ++i) wrong += got[u * kInts + i] != static_cast<int32_t>(u * 100000 + i);
  EXPECT_EQ(wrong, 0) << "of " << got.size() << " uploaded values";
}

// One plan's moves through every tier, as the worker applies them: a page to the host and on to
// disk, its device page reused at once, then back from disk through another host slot to another
// device page. Each step must see the one before it (the host reads a slot the copy stream fills,
// the compute stream overwrites a page the copy stream reads); their device time is reported.
TEST_F(CudaOps, KvStoreMovesAPageThroughHostAndDiskInOnePlan) {
  testing::TempDir dir("kvmesh-cuda-ops-disk");
  CacheConfig cache;
  cache.kv_dtype = DType::bf16;
  auto kv = KvStore::create(cache, 2, 2, 64, 4, 2, &gpu_->page_memory());
  ASSERT_TRUE(kv.is_ok()) << kv.status().to_string();
  KvStore& s = **kv;
  const Status attached = testing::attach_test_disk(s, dir.path(), 3);
  ASSERT_TRUE(attached.is_ok()) << attached.to_string();

  const size_t page = s.page_bytes();
  const KvPoolView pool = s.device_pool();
  std::vector<uint8_t> original(page), zeros(page, 0);
  for (size_t i = 0; i < page; ++i) original[i] = static_cast<uint8_t>(i * 131 + 17);
  gpu_->upload(pool.page_ptr(1), original.data(), page);
  auto move = [&](CacheOpKind kind, int32_t src, int32_t dst) {
    CacheOp op;
    op.kind = kind;
    op.src = src;
    op.dst = dst;
    op.page_hash = 42;
    op.n_tokens = 9;
    return s.apply(op);
  };
  ASSERT_TRUE(move(CacheOpKind::swap_out, 1, 0).is_ok());
  ASSERT_TRUE(move(CacheOpKind::disk_store, 0, 2).is_ok());
  ASSERT_TRUE(s.fence().is_ok());
  gpu_->copy_pages(pool, {{0, 1}});  // the zeroed page 0 over page 1
  ASSERT_TRUE(move(CacheOpKind::disk_load, 2, 1).is_ok());
  ASSERT_TRUE(move(CacheOpKind::swap_in, 1, 3).is_ok());
  ASSERT_TRUE(s.fence().is_ok());
  std::vector<uint8_t> back(page), reused(page);
  gpu_->download(back.data(), pool.page_ptr(3), page);
  gpu_->download(reused.data(), pool.page_ptr(1), page);
  ASSERT_TRUE(gpu_->status().is_ok()) << gpu_->status().to_string();
  EXPECT_TRUE(back == original) << "the page came back changed";
  EXPECT_TRUE(reused == zeros) << "the device page was not overwritten";
  // The moves ran in the background: their device time is reported once, in each direction.
  const PageMemory::CopySeconds copies = s.take_copy_seconds();
  EXPECT_GT(copies.to_host, 0.0);
  EXPECT_GT(copies.to_device, 0.0);
  const PageMemory::CopySeconds again = s.take_copy_seconds();
  EXPECT_EQ(again.to_host, 0.0);
  EXPECT_EQ(again.to_device, 0.0);
}

}  // namespace
}  // namespace kvmesh
