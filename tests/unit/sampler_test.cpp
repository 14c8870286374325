// Sampler: counter-based draws, greedy, top-k/top-p/min-p filtering, penalties and log-probs.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "worker/sampler.h"

namespace kvmesh {
namespace {

TEST(Sampler, CounterUniformIsDeterministicAndSpread) {
  EXPECT_EQ(counter_uniform(7, 100), counter_uniform(7, 100));
  EXPECT_NE(counter_uniform(7, 100), counter_uniform(7, 101));
  EXPECT_NE(counter_uniform(7, 100), counter_uniform(8, 100));
  double sum = 0;
  for (int i = 0; i < 10000; ++i) {
    double u = counter_uniform(1, i);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  EXPECT_NEAR(sum / 10000, 0.5, 0.02);
}

TEST(Sampler, GreedyPicksTheMaximum) {
  std::vector<float> logits = {0.1f, 3.0f, 2.9f, -1.0f};
  SamplingParams p;
  p.temperature = 0.0f;
  EXPECT_EQ(sample_token(p, logits.data(), 4, 0), 1);
}

TEST(Sampler, TopKAndTopPRestrictTheCandidates) {
  std::vector<float> logits = {2.0f, 1.9f, 1.8f, 0.0f, -5.0f};
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 2;
  std::map<int, int> seen;
  for (int pos = 0; pos < 2000; ++pos) seen[sample_token(p, logits.data(), 5, pos)]++;
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_GT(seen[0], 0);
  EXPECT_GT(seen[1], 0);

  p.top_k = 0;
  p.top_p = 0.3f;  // the first token alone holds more than 30 % of the mass
  for (int pos = 0; pos < 200; ++pos) EXPECT_EQ(sample_token(p, logits.data(), 5, pos), 0);

  p.top_p = 1.0f;
  p.min_p = 0.5f;  // keeps tokens with prob >= half the best: ids 0, 1, 2
  seen.clear();
  for (int pos = 0; pos < 2000; ++pos) seen[sample_token(p, logits.data(), 5, pos)]++;
  EXPECT_EQ(seen.size(), 3u);
}

TEST(Sampler, SampledFrequenciesFollowTheDistribution) {
  std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  SamplingParams p;
  p.seed = 42;
  std::vector<int> counts(3);
  const int n = 20000;
  for (int pos = 0; pos < n; ++pos) counts[sample_token(p, logits.data(), 3, pos)]++;
  EXPECT_NEAR(counts[0] / double(n), 0.5, 0.02);
  EXPECT_NEAR(counts[1] / double(n), 0.3, 0.02);
  EXPECT_NEAR(counts[2] / double(n), 0.2, 0.02);
}

TEST(Sampler, PenaltiesFollowVllmSemantics) {
  std::vector<float> logits = {2.0f, -2.0f, 1.0f, 1.0f};
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  // history: prompt {0}, output {1, 3, 3}
  apply_penalties(p, {0, 1, 3, 3}, 1, logits.data(), 4);
  EXPECT_FLOAT_EQ(logits[0], 1.0f);                  // prompt token: repetition only
  EXPECT_FLOAT_EQ(logits[1], -4.0f - 0.5f - 0.25f);  // negative logit multiplied
  EXPECT_FLOAT_EQ(logits[2], 1.0f);                  // unseen
  EXPECT_FLOAT_EQ(logits[3], 0.5f - 0.5f - 0.5f);    // twice in the output
}

TEST(Sampler, LogitBiasIsAddedToItsTokens) {
  std::vector<float> logits = {2.0f, -2.0f, 1.0f, 1.0f};
  SamplingParams p;
  p.logit_bias = {{1, 100.0f}, {0, -0.5f}, {7, 3.0f}};  // token 7 is outside the row: skipped
  apply_logit_bias(p, logits.data(), 4);
  EXPECT_EQ(logits, (std::vector<float>{1.5f, 98.0f, 1.0f, 1.0f}));
  p.temperature = 0.0f;
  EXPECT_EQ(sample_token(p, logits.data(), 4, 0), 1);
}

TEST(Sampler, LogprobsAreNormalisedAndSorted) {
  std::vector<float> logits = {1.0f, 2.0f, 3.0f};
  std::vector<double> lp;
  log_softmax(logits.data(), 3, &lp);
  double total = 0;
  for (double x : lp) total += std::exp(x);
  EXPECT_NEAR(total, 1.0, 1e-12);
  PositionLogprobs pl = position_logprobs(lp, 0, 2);
  EXPECT_EQ(pl.chosen.token, 0);
  ASSERT_EQ(pl.top.size(), 2u);
  EXPECT_EQ(pl.top[0].token, 2);
  EXPECT_EQ(pl.top[1].token, 1);
}

}  // namespace
}  // namespace kvmesh
