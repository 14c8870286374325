// pack_sample_draws and unpack_samples (the CUDA sample_rows' host side) without a device: each
// draw's parameters, its edits' place, which rows take part in the sort, the sort's size limit, and
// the results back as RowSample with or without log-probs.
#include <gtest/gtest.h>

#include <climits>
#include <vector>

#include "worker/cuda/layout/sample_staging.h"

namespace kvmesh {
namespace {

RowDraw draw(float temperature, int32_t n_top, int n_edits = 0) {
  RowDraw d;
  d.params.temperature = temperature;
  d.n_top = n_top;
  for (int i = 0; i < n_edits; ++i) d.edits.push_back({i * 3, kEditBias, 0.5f * static_cast<float>(i + 1), i});
  return d;
}

TEST(SampleStaging, PacksEachDrawsParameters) {
  RowDraw d = draw(0.7f, 5);
  d.params.top_p = 0.9f;
  d.params.min_p = 0.05f;
  d.params.top_k = 40;
  d.params.seed = 0x123456789abcULL;
  d.params.repetition_penalty = 1.3f;
  d.params.frequency_penalty = 0.25f;
  d.params.presence_penalty = -0.5f;
  d.position = 77;
  auto packed = pack_sample_draws(&d, 1, 50);
  ASSERT_TRUE(packed.is_ok());
  ASSERT_EQ(packed->draws.size(), 1u);
  const SampleDraw& p = packed->draws[0];
  EXPECT_EQ(p.temperature, 0.7f);
  EXPECT_EQ(p.top_p, 0.9f);
  EXPECT_EQ(p.min_p, 0.05f);
  EXPECT_EQ(p.top_k, 40);
  EXPECT_EQ(p.seed, 0x123456789abcULL);
  EXPECT_EQ(p.position, 77);
  EXPECT_EQ(p.greedy, 0);
  EXPECT_EQ(p.n_top, 5);
  EXPECT_EQ(p.repetition_penalty, 1.3f);
  EXPECT_EQ(p.frequency_penalty, 0.25f);
  EXPECT_EQ(p.presence_penalty, -0.5f);
  EXPECT_EQ(p.sort_slot, 0);
  EXPECT_EQ(packed->n_sorted, 1);
}

TEST(SampleStaging, SortsOnlyRowsThatDrawRankOrEdit) {
  RowDraw top_k_one = draw(1.0f, -1);
  top_k_one.params.top_k = 1;  // greedy too
  const std::vector<RowDraw> draws = {
      draw(0.0f, -1),     // greedy, nothing else: the argmax alone
      draw(0.8f, -1),     // a draw
      draw(0.0f, 0),      // greedy with the token's own log-prob only
      draw(0.0f, 3),      // greedy with top log-probs
      draw(0.0f, -7, 2),  // greedy with edits; any negative n_top is none
      top_k_one,
  };
  auto packed = pack_sample_draws(draws.data(), static_cast<int64_t>(draws.size()), 10);
  ASSERT_TRUE(packed.is_ok());
  const std::vector<int32_t> want_slots = {-1, 0, -1, 1, 2, -1};
  const std::vector<int32_t> want_greedy = {1, 0, 1, 1, 1, 1};
  const std::vector<int32_t> want_top = {-1, -1, 0, 3, -1, -1};
  for (size_t i = 0; i < draws.size(); ++i) {
    EXPECT_EQ(packed->draws[i].sort_slot, want_slots[i]) << "row " << i;
    EXPECT_EQ(packed->draws[i].greedy, want_greedy[i]) << "row " << i;
    EXPECT_EQ(packed->draws[i].n_top, want_top[i]) << "row " << i;
  }
  EXPECT_EQ(packed->n_sorted, 3);
  // One logit per row: nothing to sort.
  auto single = pack_sample_draws(draws.data(), static_cast<int64_t>(draws.size()), 1);
  ASSERT_TRUE(single.is_ok());
  EXPECT_EQ(single->n_sorted, 0);
  for (const SampleDraw& d : single->draws) EXPECT_EQ(d.sort_slot, -1);
}

TEST(SampleStaging, LaysEveryRowsEditsOneAfterAnother) {
  const std::vector<RowDraw> draws = {draw(1.0f, -1, 2), draw(1.0f, -1), draw(1.0f, -1, 3)};
  auto packed = pack_sample_draws(draws.data(), 3, 20);
  ASSERT_TRUE(packed.is_ok());
  ASSERT_EQ(packed->edits.size(), 5u);
  const std::vector<int32_t> want_begin = {0, 2, 2}, want_n = {2, 0, 3};
  for (size_t i = 0; i < draws.size(); ++i) {
    const SampleDraw& d = packed->draws[i];
    EXPECT_EQ(d.edit_begin, want_begin[i]) << "row " << i;
    EXPECT_EQ(d.n_edits, want_n[i]) << "row " << i;
    for (int32_t j = 0; j < d.n_edits; ++j) {
      const LogitEdit& got = packed->edits[static_cast<size_t>(d.edit_begin + j)];
      EXPECT_EQ(got.token, draws[i].edits[j].token);
      EXPECT_EQ(got.flags, draws[i].edits[j].flags);
      EXPECT_EQ(got.bias, draws[i].edits[j].bias);
      EXPECT_EQ(got.output_count, draws[i].edits[j].output_count);
    }
  }
}

TEST(SampleStaging, RefusesASortOf2To31Logits) {
  const std::vector<RowDraw> draws = {draw(1.0f, -1), draw(1.0f, -1), draw(0.0f, -1)};
  const int64_t v = int64_t{1} << 30;
  auto two = pack_sample_draws(draws.data(), 2, v);  // 2^31 sorted logits
  ASSERT_FALSE(two.is_ok());
  EXPECT_EQ(two.status().code(), StatusCode::invalid_argument);
  // The greedy row takes no part in the sort.
  EXPECT_TRUE(pack_sample_draws(draws.data() + 1, 2, v).is_ok());
}

TEST(SampleStaging, UnpacksTokensAndTheLogProbsEachDrawAsked) {
  std::vector<SampleDraw> draws(3);
  draws[0].n_top = -1;
  draws[1].n_top = 0;
  draws[2].n_top = 3;
  std::vector<SampleOut> results(3);
  for (int i = 0; i < 3; ++i) {
    results[i].token = 10 + i;
    results[i].logprob = -0.5f * static_cast<float>(i + 1);
    results[i].n_top = i == 2 ? 3 : 0;
    for (int j = 0; j < kMaxSampleTop; ++j) {
      results[i].top_ids[j] = 100 * i + j;
      results[i].top_logprobs[j] = -static_cast<float>(j);
    }
  }
  std::vector<RowSample> out(3);
  for (RowSample& s : out) s.logprobs.top = {{1, 1.0f}};  // left from an earlier step
  unpack_samples(draws, results.data(), out.data());
  EXPECT_EQ(out[0].token, 10);
  EXPECT_EQ(out[0].logprobs.chosen.token, -1);
  EXPECT_TRUE(out[0].logprobs.top.empty());
  EXPECT_EQ(out[1].token, 11);
  EXPECT_EQ(out[1].logprobs.chosen.token, 11);
  EXPECT_EQ(out[1].logprobs.chosen.logprob, -1.0f);
  EXPECT_TRUE(out[1].logprobs.top.empty());
  EXPECT_EQ(out[2].token, 12);
  EXPECT_EQ(out[2].logprobs.chosen.logprob, -1.5f);
  ASSERT_EQ(out[2].logprobs.top.size(), 3u);
  for (int j = 0; j < 3; ++j) {
    EXPECT_EQ(out[2].logprobs.top[j].token, 200 + j);
    EXPECT_EQ(out[2].logprobs.top[j].logprob, -static_cast<float>(j));
  }
}

TEST(SampleStagingDeathTest, MoreTopLogProbsThanTheDeviceReturnsIsABrokenInvariant) {
  const RowDraw d = draw(1.0f, kMaxSampleTop + 1);
  EXPECT_DEATH((void)pack_sample_draws(&d, 1, 100), "");
}

}  // namespace
}  // namespace kvmesh
