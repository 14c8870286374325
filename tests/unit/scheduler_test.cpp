// Scheduler::schedule() on its own, with no model: plans are answered by a made-up token per
// sampling sequence. Chunked prefill stays within the token budget, seats go first come first
// served, a cancelled group ends at the next plan and frees its pages, and a cache too small for
// everyone preempts and recomputes without losing a token.
#include "coordinator/scheduler.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <vector>

#include "shipped_tokenizer.h"

namespace kvmesh {
namespace {

using testing::gpt2_tokenizer;

constexpr int32_t kBlock = 16;

TierCapacity device_pages(int32_t n) {
  TierCapacity c;
  c.device_pages = n;
  return c;
}

GenerationRequest request(int32_t n_prompt, int32_t max_tokens, int32_t first_token = 100) {
  GenerationRequest r;
  for (int32_t i = 0; i < n_prompt; ++i) r.prompt_ids.push_back(first_token + i);
  r.max_tokens = max_tokens;
  r.ignore_eos = true;
  return r;
}

// Answers a plan as a worker would, with token 11 for every sampling sequence.
StepResult answer(const StepPlan& plan) {
  StepResult result;
  result.step_id = plan.step_id;
  for (const SeqWork& w : plan.seqs) {
    SeqResult r;
    r.seq_id = w.seq_id;
    if (w.sample) r.token = 11;
    result.seqs.push_back(r);
  }
  return result;
}

// Collects every delta per group id.
struct Outputs {
  std::map<uint64_t, GenerationOutput> by_group;
  OutputSink sink(uint64_t group) {
    return [this, group](const GenerationDelta& d) { by_group[group].append(d); };
  }
};

SchedulerConfig config(int32_t max_num_seqs, int32_t max_batch_tokens) {
  SchedulerConfig c;
  c.max_num_seqs = max_num_seqs;
  c.max_batch_tokens = max_batch_tokens;
  c.n_positions = 1024;
  c.eos_token_id = 50256;
  return c;
}

TEST(Scheduler, ChunkedPrefillStaysWithinTheTokenBudget) {
  Scheduler s(config(8, 32), device_pages(64), kBlock, gpt2_tokenizer().get());
  Outputs out;
  s.add(1, request(100, 3), out.sink(1));
  std::vector<int32_t> chunks;
  for (int step = 0; step < 4; ++step) {
    const StepPlan plan = s.schedule();
    ASSERT_EQ(plan.seqs.size(), 1u);
    const SeqWork& w = plan.seqs[0];
    EXPECT_EQ(w.n_past, 32 * step);
    EXPECT_EQ(w.sample, step == 3) << "only the chunk that ends the prompt samples";
    EXPECT_EQ(static_cast<int32_t>(w.block_table.size()), (w.n_past + w.n_tokens() + kBlock - 1) / kBlock);
    chunks.push_back(w.n_tokens());
    s.postprocess(plan, answer(plan));
  }
  EXPECT_EQ(chunks, (std::vector<int32_t>{32, 32, 32, 4}));
  for (int step = 0; step < 2; ++step) {  // decode: one token a step
    const StepPlan plan = s.schedule();
    ASSERT_EQ(plan.seqs.size(), 1u);
    EXPECT_EQ(plan.seqs[0].n_tokens(), 1);
    EXPECT_EQ(plan.seqs[0].n_past, 100 + step);
    s.postprocess(plan, answer(plan));
  }
  EXPECT_FALSE(s.has_work());
  EXPECT_EQ(out.by_group[1].token_ids, (std::vector<int32_t>{11, 11, 11}));
  EXPECT_EQ(out.by_group[1].finish, FinishReason::length);
  EXPECT_EQ(s.blocks().n_used(), 0);
}

TEST(Scheduler, SeatsGoFirstComeFirstServed) {
  Scheduler s(config(2, 2048), device_pages(64), kBlock, gpt2_tokenizer().get());
  Outputs out;
  s.add(1, request(5, 1), out.sink(1));
  s.add(2, request(5, 3), out.sink(2));
  s.add(3, request(5, 1), out.sink(3));
  StepPlan plan = s.schedule();
  ASSERT_EQ(plan.seqs.size(), 2u);  // two seats: the first two to arrive
  EXPECT_EQ(s.n_running(), 2);
  EXPECT_EQ(s.n_waiting(), 1);
  s.postprocess(plan, answer(plan));  // group 1 is done (max_tokens 1): its seat frees
  EXPECT_TRUE(out.by_group[1].finished());
  plan = s.schedule();
  ASSERT_EQ(plan.seqs.size(), 2u);
  EXPECT_EQ(plan.seqs[1].n_past, 0) << "the third request prefills beside the second's decode";
  EXPECT_EQ(plan.seqs[1].n_tokens(), 5);
  for (int guard = 0; s.has_work() && guard < 10; ++guard) {
    plan = s.schedule();
    s.postprocess(plan, answer(plan));
  }
  for (uint64_t g : {1, 2, 3}) EXPECT_EQ(out.by_group[g].finish, FinishReason::length) << g;
  EXPECT_EQ(out.by_group[2].token_ids.size(), 3u);
}

TEST(Scheduler, CancelledGroupEndsAtTheNextPlanAndFreesItsPages) {
  Scheduler s(config(8, 2048), device_pages(64), kBlock, gpt2_tokenizer().get());
  Outputs out;
  s.add(1, request(40, 50), out.sink(1));
  s.add(2, request(8, 2), out.sink(2));
  StepPlan plan = s.schedule();
  s.postprocess(plan, answer(plan));
  EXPECT_GT(s.blocks().n_used(), 0);
  s.cancel(1);
  EXPECT_FALSE(out.by_group[1].finished()) << "cancelling takes effect at the next plan";
  plan = s.schedule();
  EXPECT_EQ(plan.seqs.size(), 1u) << "only the other group runs";
  EXPECT_EQ(out.by_group[1].finish, FinishReason::cancelled);
  s.postprocess(plan, answer(plan));
  EXPECT_FALSE(s.has_work());
  EXPECT_EQ(s.blocks().n_used(), 0);
}

TEST(Scheduler, TooSmallACachePreemptsAndRecomputesWithoutLosingTokens) {
  // Two sequences that each grow to 3 pages in a 4-page cache: one must give way.
  Scheduler s(config(8, 2048), device_pages(4), kBlock, gpt2_tokenizer().get());
  Outputs out;
  s.add(1, request(20, 20, 100), out.sink(1));
  s.add(2, request(20, 20, 5000), out.sink(2));  // no prefix in common
  for (int guard = 0; s.has_work() && guard < 200; ++guard) {
    const StepPlan plan = s.schedule();
    std::set<int32_t> pages;
    for (const SeqWork& w : plan.seqs) pages.insert(w.block_table.begin(), w.block_table.end());
    EXPECT_LE(pages.size(), 4u);
    s.postprocess(plan, answer(plan));
  }
  EXPECT_FALSE(s.has_work());
  EXPECT_GT(s.stats().n_preemptions, 0);
  for (uint64_t g : {1, 2}) {
    EXPECT_EQ(out.by_group[g].finish, FinishReason::length) << g;
    EXPECT_EQ(out.by_group[g].token_ids.size(), 20u) << g;
  }
}

}  // namespace
}  // namespace kvmesh
