// Sampler: counter-based draws, greedy, top-k/top-p/min-p filtering, logit edits (bias, penalties,
// bans) and log-probs.
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

std::vector<float> edited(const SamplingParams& p, std::vector<float> logits, const std::vector<int32_t>& history,
                          int32_t n_prompt, const std::vector<int32_t>& banned = {}) {
  const auto n = static_cast<int32_t>(logits.size());
  apply_logit_edits(p, logit_edits(p, history, n_prompt, banned, n), logits.data(), n);
  return logits;
}

TEST(Sampler, PenaltiesFollowVllmSemantics) {
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  // history: prompt {0}, output {1, 3, 3}
  const std::vector<float> logits = edited(p, {2.0f, -2.0f, 1.0f, 1.0f}, {0, 1, 3, 3}, 1);
  EXPECT_FLOAT_EQ(logits[0], 1.0f);                  // prompt token: repetition only
  EXPECT_FLOAT_EQ(logits[1], -4.0f - 0.5f - 0.25f);  // negative logit multiplied
  EXPECT_FLOAT_EQ(logits[2], 1.0f);                  // unseen
  EXPECT_FLOAT_EQ(logits[3], 0.5f - 0.5f - 0.5f);    // twice in the output
}

TEST(Sampler, LogitBiasIsAddedToItsTokens) {
  SamplingParams p;
  p.logit_bias = {{1, 100.0f}, {0, -0.5f}, {7, 3.0f}};  // token 7 is outside the row: skipped
  const std::vector<float> logits = edited(p, {2.0f, -2.0f, 1.0f, 1.0f}, {}, 0);
  EXPECT_EQ(logits, (std::vector<float>{1.5f, 98.0f, 1.0f, 1.0f}));
  p.temperature = 0.0f;
  EXPECT_EQ(sample_token(p, logits.data(), 4, 0), 1);
}

// The bias before the repetition penalty (vLLM's order), the penalties before a ban.
TEST(Sampler, LogitEditsApplyBiasThenPenaltiesThenBans) {
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  p.frequency_penalty = 0.25f;
  p.logit_bias = {{0, -3.0f}, {2, 1.0f}};
  // 0: 1 - 3 = -2, then x 2; 1: banned after its penalties; 2: unseen, biased; 3: banned only.
  const std::vector<float> logits = edited(p, {1.0f, 4.0f, 0.5f, 2.0f}, {0, 1}, 1, {1, 3, 3, 9});
  EXPECT_EQ(logits, (std::vector<float>{-4.0f, -INFINITY, 1.5f, -INFINITY}));
  const std::vector<LogitEdit> edits = logit_edits(p, {0, 1}, 1, {1, 3, 3, 9}, 4);
  ASSERT_EQ(edits.size(), 4u);  // one per token, ascending; token 9 is outside
  for (int32_t t = 0; t < 4; ++t) EXPECT_EQ(edits[t].token, t);
  EXPECT_EQ(edits[1].flags, kEditRepeated | kEditBanned);
  EXPECT_EQ(edits[1].output_count, 1);
}

// Tokens a draw does not change get no edit: a prompt token when only presence and frequency are on.
TEST(Sampler, LogitEditsLeaveOutTokensTheyDoNotChange) {
  SamplingParams p;
  p.presence_penalty = 1.0f;
  const std::vector<LogitEdit> edits = logit_edits(p, {5, 6, 7, 7}, 2, {}, 10);
  ASSERT_EQ(edits.size(), 1u);
  EXPECT_EQ(edits[0].token, 7);
  EXPECT_EQ(edits[0].flags, 0u);
  EXPECT_EQ(edits[0].output_count, 2);
  EXPECT_TRUE(logit_edits(SamplingParams{}, {5, 6, 7}, 1, {}, 10).empty());  // no penalties, no bias
}

// Random histories, biases and bans against the penalties written out token by token.
TEST(Sampler, LogitEditsMatchTheFormulaOnRandomCases) {
  uint64_t state = 12345;
  auto next = [&](uint64_t bound) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return (state >> 33) % bound;
  };
  const int32_t n = 64;
  for (int c = 0; c < 200; ++c) {
    SamplingParams p;
    p.repetition_penalty = c % 3 == 0 ? 1.0f : 1.0f + static_cast<float>(next(100)) / 50.0f;
    p.frequency_penalty = static_cast<float>(next(9)) / 4.0f - 1.0f;
    p.presence_penalty = c % 4 == 0 ? 0.0f : static_cast<float>(next(9)) / 4.0f - 1.0f;
    std::map<int32_t, float> bias;
    for (int i = 0; i < c % 5; ++i) bias[static_cast<int32_t>(next(n))] = static_cast<float>(next(41)) - 20.0f + 0.5f;
    for (const auto& [t, b] : bias) p.logit_bias.push_back({t, b});
    std::vector<int32_t> history, banned;
    for (int i = 0; i < static_cast<int>(next(40)); ++i) history.push_back(static_cast<int32_t>(next(n)));
    const auto n_prompt = static_cast<int32_t>(next(history.size() + 1));
    for (int i = 0; i < c % 3; ++i) banned.push_back(static_cast<int32_t>(next(n)));
    std::vector<float> logits(n);
    for (float& x : logits) x = static_cast<float>(next(2001)) / 100.0f - 10.0f;

    std::vector<float> want = logits;
    for (int32_t t = 0; t < n; ++t) {
      float x = want[t];
      if (bias.count(t)) x += bias[t];
      int32_t seen = 0, in_output = 0;
      for (size_t i = 0; i < history.size(); ++i) {
        if (history[i] != t) continue;
        ++seen;
        if (static_cast<int32_t>(i) >= n_prompt) ++in_output;
      }
      if (p.has_penalties()) {
        if (seen > 0 && p.repetition_penalty != 1.0f) x = x > 0 ? x / p.repetition_penalty : x * p.repetition_penalty;
        if (in_output > 0) {
          const float penalty = p.frequency_penalty * static_cast<float>(in_output);
          x -= penalty + p.presence_penalty;
        }
      }
      for (int32_t b : banned)
        if (b == t) x = -INFINITY;
      want[t] = x;
    }
    EXPECT_EQ(edited(p, logits, history, n_prompt, banned), want) << "case " << c;
  }
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
