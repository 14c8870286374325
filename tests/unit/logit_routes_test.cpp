// route_logit_rows: plain greedy rows first (among the draws when there are any), then the draws
// sampled where the logits are (with their logit edits), then the rows that need full logits on
// the host; each sequence knows where its rows come back.
#include <gtest/gtest.h>

#include "worker/micro_batch.h"

namespace kvmesh {
namespace {

SeqWork seq(int32_t n_tokens, bool sample) {
  SeqWork s;
  s.n_past = 10;
  s.token_ids.assign(static_cast<size_t>(n_tokens), 5);
  s.sample = sample;
  s.sampling.temperature = 0.0f;
  return s;
}

// The plan's sequences laid out one after another in one micro-batch.
MicroBatch lay_out(const StepPlan& plan) {
  MicroBatch mb;
  mb.seq_begin = 0;
  mb.seq_end = plan.seqs.size();
  int32_t begin = 0;
  for (const SeqWork& s : plan.seqs) {
    mb.batch.seqs.push_back({begin, s.n_tokens(), s.n_past, nullptr});
    begin += s.n_tokens();
  }
  return mb;
}

StepPlan mixed_plan() {
  StepPlan plan;
  plan.seqs.push_back(seq(1, true));  // 0: plain greedy                 row 0
  SeqWork sampled = seq(1, true);      // 1: sampled                      row 1
  sampled.sampling.temperature = 0.8f;
  sampled.sampling.top_p = 0.9f;
  sampled.sampling.seed = 7;
  plan.seqs.push_back(sampled);
  plan.seqs.push_back(seq(4, false));  // 2: a prefill chunk, no draw    rows 2..5
  SeqWork penalised = seq(1, true);    // 3: penalties                    row 6
  penalised.sampling.repetition_penalty = 1.2f;
  penalised.history_ids = {11, 12, 12};
  penalised.n_history_prompt = 1;
  plan.seqs.push_back(penalised);
  SeqWork greedy_logprobs = seq(2, true);  // 4: greedy with log-probs    rows 7..8
  greedy_logprobs.sampling.n_logprobs = 3;
  plan.seqs.push_back(greedy_logprobs);
  SeqWork prompt = seq(3, true);       // 5: prompt log-probs             rows 9..11
  prompt.prompt_logprobs = 2;
  plan.seqs.push_back(prompt);
  SeqWork banned = seq(1, true);       // 6: banned tokens                row 12
  banned.banned_token_ids = {50256};
  plan.seqs.push_back(banned);
  plan.seqs.push_back(seq(1, true));   // 7: plain greedy                 row 13
  SeqWork biased = seq(1, true);       // 8: logit bias, greedy           row 14
  biased.sampling.temperature = 0.0f;
  biased.sampling.logit_bias = {{11, 5.0f}};
  plan.seqs.push_back(biased);
  return plan;
}

constexpr int32_t kVocab = 50257;

// Beside draws, the plain greedy rows are draws too (the head waits for the device once).
TEST(LogitRoutes, DeviceThenHostRowsWithPlainGreedyRowsAmongTheDraws) {
  const StepPlan plan = mixed_plan();
  MicroBatch mb = lay_out(plan);
  route_logit_rows(plan, kVocab, &mb);
  EXPECT_EQ(mb.head.n_greedy, 0);
  ASSERT_EQ(mb.head.draws.size(), 7u);
  EXPECT_EQ(mb.head.rows, (std::vector<int32_t>{0, 1, 6, 8, 12, 13, 14, 9, 10, 11}));
  EXPECT_EQ(mb.head.n_host_rows(), 3);
  EXPECT_TRUE(mb.head.draws[0].params.greedy());  // plain greedy: no log-probs, no edits
  EXPECT_EQ(mb.head.draws[0].n_top, -1);
  EXPECT_TRUE(mb.head.draws[0].edits.empty());
  EXPECT_EQ(mb.head.draws[1].params.seed, 7u);
  EXPECT_EQ(mb.head.draws[1].position, 11);
  EXPECT_EQ(mb.head.draws[1].n_top, -1);
  EXPECT_TRUE(mb.head.draws[1].edits.empty());
  EXPECT_EQ(mb.head.draws[3].position, 12);
  EXPECT_EQ(mb.head.draws[3].n_top, 3);
  const std::vector<std::pair<RowRoute, int32_t>> want = {
      {RowRoute::device, 0}, {RowRoute::device, 1}, {RowRoute::none, 0}, {RowRoute::device, 2},
      {RowRoute::device, 3}, {RowRoute::host, 0},   {RowRoute::device, 4}, {RowRoute::device, 5},
      {RowRoute::device, 6}};
  ASSERT_EQ(mb.seq_rows.size(), want.size());
  for (size_t k = 0; k < want.size(); ++k) {
    EXPECT_EQ(mb.seq_rows[k].route, want[k].first) << k;
    EXPECT_EQ(mb.seq_rows[k].first, want[k].second) << k;
  }
}

// Without draws, plain greedy rows come back as argmaxes, first, then the host rows.
TEST(LogitRoutes, PlainGreedyRowsWithoutDrawsTakeTheArgmaxFirst) {
  StepPlan plan;
  plan.seqs.push_back(seq(1, true));   // 0: plain greedy     row 0
  SeqWork prompt = seq(3, true);       // 1: prompt log-probs rows 1..3
  prompt.prompt_logprobs = 0;
  plan.seqs.push_back(prompt);
  plan.seqs.push_back(seq(2, false));  // 2: no draw          rows 4..5
  plan.seqs.push_back(seq(1, true));   // 3: plain greedy     row 6
  MicroBatch mb = lay_out(plan);
  route_logit_rows(plan, kVocab, &mb);
  EXPECT_EQ(mb.head.n_greedy, 2);
  EXPECT_TRUE(mb.head.draws.empty());
  EXPECT_EQ(mb.head.rows, (std::vector<int32_t>{0, 6, 1, 2, 3}));
  const std::vector<std::pair<RowRoute, int32_t>> want = {
      {RowRoute::greedy, 0}, {RowRoute::host, 0}, {RowRoute::none, 0}, {RowRoute::greedy, 1}};
  ASSERT_EQ(mb.seq_rows.size(), want.size());
  for (size_t k = 0; k < want.size(); ++k) {
    EXPECT_EQ(mb.seq_rows[k].route, want[k].first) << k;
    EXPECT_EQ(mb.seq_rows[k].first, want[k].second) << k;
  }
}

// Penalties, banned tokens and a logit bias travel with their draws as edits.
TEST(LogitRoutes, DrawsCarryTheirLogitEdits) {
  const StepPlan plan = mixed_plan();
  MicroBatch mb = lay_out(plan);
  route_logit_rows(plan, kVocab, &mb);
  ASSERT_EQ(mb.head.draws.size(), 7u);
  const std::vector<LogitEdit>& penalised = mb.head.draws[2].edits;
  ASSERT_EQ(penalised.size(), 2u);
  EXPECT_EQ(penalised[0].token, 11);  // the prompt token: repetition only
  EXPECT_EQ(penalised[0].flags, kEditRepeated);
  EXPECT_EQ(penalised[0].output_count, 0);
  EXPECT_EQ(penalised[1].token, 12);  // twice in the output
  EXPECT_EQ(penalised[1].flags, kEditRepeated);
  EXPECT_EQ(penalised[1].output_count, 2);
  EXPECT_FLOAT_EQ(mb.head.draws[2].params.repetition_penalty, 1.2f);
  ASSERT_EQ(mb.head.draws[4].edits.size(), 1u);
  EXPECT_EQ(mb.head.draws[4].edits[0].token, 50256);
  EXPECT_EQ(mb.head.draws[4].edits[0].flags, kEditBanned);
  ASSERT_EQ(mb.head.draws[6].edits.size(), 1u);  // greedy, yet sampled with its bias
  EXPECT_EQ(mb.head.draws[6].edits[0].flags, kEditBias);
  EXPECT_FLOAT_EQ(mb.head.draws[6].edits[0].bias, 5.0f);
  EXPECT_TRUE(mb.head.draws[6].params.greedy());
}

// A token outside the vocabulary (a bias or ban sent for a larger model) is left out of the edits.
TEST(LogitRoutes, EditsStayInsideTheVocabulary) {
  StepPlan plan;
  SeqWork s = seq(1, true);
  s.banned_token_ids = {3, 999};
  s.sampling.logit_bias = {{1000, 2.0f}, {2, -1.0f}};
  plan.seqs.push_back(s);
  MicroBatch mb = lay_out(plan);
  route_logit_rows(plan, 1000, &mb);
  ASSERT_EQ(mb.head.draws.size(), 1u);
  const std::vector<LogitEdit>& edits = mb.head.draws[0].edits;
  ASSERT_EQ(edits.size(), 3u);
  EXPECT_EQ(edits[0].token, 2);
  EXPECT_EQ(edits[1].token, 3);
  EXPECT_EQ(edits[2].token, 999);
}

}  // namespace
}  // namespace kvmesh
