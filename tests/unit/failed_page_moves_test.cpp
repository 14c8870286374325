// A worker that reports a failed page move (swap-in, copy-on-write copy, swap-out) never leads to a
// wrong answer: the sequences holding the page recompute it, and the results equal a clean run.
#include <gtest/gtest.h>

#include "engine_fixture.h"

namespace kvmesh::testing {
namespace {

// Runs plans on a real worker, then reports the first `budget` ops of one kind as failed (as a
// worker does when a copy breaks), so the coordinator must treat their pages as lost.
class FailingMovesExecutor : public StepExecutor {
 public:
  FailingMovesExecutor(std::unique_ptr<StepExecutor> inner, CacheOpKind kind, int budget)
      : inner_(std::move(inner)), kind_(kind), budget_(budget) {}
  Status execute(const StepPlan& plan, StepResult* result) override {
    KVMESH_RETURN_IF_ERROR(inner_->execute(plan, result));
    for (size_t i = 0; i < plan.cache_ops.size() && budget_ > 0; ++i) {
      if (plan.cache_ops[i].kind != kind_) continue;
      result->failed_cache_ops.push_back(static_cast<int32_t>(i));
      --budget_;
      ++n_failed_;
    }
    return Status::ok();
  }
  const TierCapacity& capacity() const override { return inner_->capacity(); }
  int n_failed() const { return n_failed_; }

 private:
  std::unique_ptr<StepExecutor> inner_;
  CacheOpKind kind_;
  int budget_;
  int n_failed_ = 0;
};

std::unique_ptr<Engine> failing_engine(CacheOpKind kind, int budget, int32_t device_pages, FailingMovesExecutor** out) {
  EngineSpec spec;
  spec.worker.model_dir = hf_fixture_dir();
  spec.worker.cache.block_size = 16;
  spec.worker.cache.device_bytes = static_cast<int64_t>(device_pages) * 16 * 4 * 2 * 32 * 4;  // pages of the fixture
  spec.worker.cache.host_bytes = 64ll << 20;
  spec.worker.n_threads = 2;
  auto engine = make_local_engine(spec, gpt2_tokenizer(), [&](std::unique_ptr<StepExecutor> inner) {
    auto failing = std::make_unique<FailingMovesExecutor>(std::move(inner), kind, budget);
    *out = failing.get();
    return std::unique_ptr<StepExecutor>(std::move(failing));
  });
  return engine.is_ok() ? std::move(engine).value() : nullptr;
}

std::vector<int32_t> prompt_of(int32_t n, int32_t salt) {
  std::vector<int32_t> p;
  for (int32_t i = 0; i < n; ++i) p.push_back((i * 131 + salt * 977 + 5) % 50000);
  return p;
}

// A, then B (which pushes A's pages to the host tier), then A's prompt again (swapped back in).
std::vector<GenerationRequest> returning_prefix() {
  std::vector<int32_t> again = prompt_of(64, 1);
  again.push_back(7);
  return {greedy_request(prompt_of(64, 1), 4), greedy_request(prompt_of(96, 2), 4), greedy_request(again, 6)};
}

std::vector<GenerationOutput> one_by_one(Engine& engine, const std::vector<GenerationRequest>& reqs) {
  std::vector<GenerationOutput> out;
  for (const auto& r : reqs) {
    auto o = generate_blocking(engine, r);
    EXPECT_TRUE(o.is_ok()) << o.status().to_string();
    out.push_back(o.is_ok() ? *o : GenerationOutput{});
  }
  return out;
}

TEST(FailedPageMoves, FailedSwapInIsRecomputed) {
  auto reference = make_engine(hf_fixture_dir(), EngineOptions{});
  ASSERT_NE(reference, nullptr);
  const auto expected = one_by_one(*reference, returning_prefix());
  FailingMovesExecutor* executor = nullptr;
  auto engine = failing_engine(CacheOpKind::swap_in, 1, 8, &executor);
  ASSERT_NE(engine, nullptr);
  const auto got = one_by_one(*engine, returning_prefix());
  EXPECT_EQ(executor->n_failed(), 1);  // the scenario did swap a page in
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(got[i].token_ids, expected[i].token_ids) << i;
  const BlockManager& blocks = engine->scheduler().blocks();
  EXPECT_EQ(blocks.counters().failed_moves, 1);
  EXPECT_GT(engine->scheduler().stats().n_preemptions, 0);  // the holder recomputed
  EXPECT_EQ(blocks.n_used(), 0);
}

TEST(FailedPageMoves, FailedCopyOnWriteIsRecomputed) {
  GenerationRequest beams;
  beams.prompt_ids = prompt_of(40, 3);
  beams.max_tokens = 8;
  beams.n = beams.best_of = 3;
  beams.beam_search = true;
  beams.ignore_eos = true;
  auto reference = make_engine(hf_fixture_dir(), EngineOptions{});
  ASSERT_NE(reference, nullptr);
  auto expected = generate_group_blocking(*reference, beams);
  ASSERT_TRUE(expected.is_ok());
  FailingMovesExecutor* executor = nullptr;
  auto engine = failing_engine(CacheOpKind::copy, 2, 64, &executor);
  ASSERT_NE(engine, nullptr);
  auto got = generate_group_blocking(*engine, beams);
  ASSERT_TRUE(got.is_ok());
  EXPECT_EQ(executor->n_failed(), 2);
  for (size_t i = 0; i < expected->size(); ++i) {
    EXPECT_EQ((*got)[i].token_ids, (*expected)[i].token_ids) << i;
    EXPECT_NEAR((*got)[i].score, (*expected)[i].score, 1e-5) << i;
  }
  EXPECT_EQ(engine->scheduler().blocks().n_used(), 0);
}

TEST(FailedPageMoves, FailedSwapOutLosesOnlyTheCachedCopy) {
  auto reference = make_engine(hf_fixture_dir(), EngineOptions{});
  ASSERT_NE(reference, nullptr);
  const auto expected = one_by_one(*reference, returning_prefix());
  FailingMovesExecutor* executor = nullptr;
  auto engine = failing_engine(CacheOpKind::swap_out, 1000, 8, &executor);
  ASSERT_NE(engine, nullptr);
  const auto got = one_by_one(*engine, returning_prefix());
  EXPECT_GT(executor->n_failed(), 0);
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(got[i].token_ids, expected[i].token_ids) << i;
  EXPECT_EQ(engine->scheduler().blocks().n_cached(Tier::host), 0);  // nothing untrustworthy kept
  EXPECT_EQ(engine->scheduler().blocks().counters().hits[static_cast<int>(Tier::host)], 0);
}

}  // namespace
}  // namespace kvmesh::testing
