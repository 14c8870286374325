// route_logit_rows: plain greedy rows first, then the draws sampled where the logits are, then the
// rows that need full logits on the host; each sequence knows where its rows come back.
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

TEST(LogitRoutes, GreedyThenDeviceThenHostRows) {
  const StepPlan plan = mixed_plan();
  MicroBatch mb = lay_out(plan);
  route_logit_rows(plan, &mb);
  EXPECT_EQ(mb.head.n_greedy, 2);
  ASSERT_EQ(mb.head.draws.size(), 2u);
  EXPECT_EQ(mb.head.rows, (std::vector<int32_t>{0, 13, 1, 8, 6, 9, 10, 11, 12, 14}));
  EXPECT_EQ(mb.head.n_host_rows(), 6);
  EXPECT_EQ(mb.head.draws[0].params.seed, 7u);
  EXPECT_EQ(mb.head.draws[0].position, 11);
  EXPECT_EQ(mb.head.draws[0].n_top, -1);
  EXPECT_EQ(mb.head.draws[1].position, 12);
  EXPECT_EQ(mb.head.draws[1].n_top, 3);
  const std::vector<std::pair<RowRoute, int32_t>> want = {
      {RowRoute::greedy, 0}, {RowRoute::device, 0}, {RowRoute::none, 0}, {RowRoute::host, 0},
      {RowRoute::device, 1}, {RowRoute::host, 1},   {RowRoute::host, 4}, {RowRoute::greedy, 1},
      {RowRoute::host, 5}};
  ASSERT_EQ(mb.seq_rows.size(), want.size());
  for (size_t k = 0; k < want.size(); ++k) {
    EXPECT_EQ(mb.seq_rows[k].route, want[k].first) << k;
    EXPECT_EQ(mb.seq_rows[k].first, want[k].second) << k;
  }
}

}  // namespace
}  // namespace kvmesh
