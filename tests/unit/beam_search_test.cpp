// BeamSearch bookkeeping on hand-made candidates: which candidates run on, which finish, their
// length-normalised scores, and when each early_stopping mode ends the search.
#include <gtest/gtest.h>

#include "coordinator/beam_search.h"

namespace kvmesh {
namespace {

BeamCandidate cand(int32_t parent, int32_t token, float cumulative, bool ends = false) {
  return BeamCandidate{parent, token, 0.0f, cumulative, ends};
}

std::vector<int32_t> tokens_of(const std::vector<BeamCandidate>& c) {
  std::vector<int32_t> t;
  for (const auto& x : c) t.push_back(x.token);
  return t;
}

// Step 0 from the prompt: token 1 ends at once (best), 2 and 4 run on, 3 ends too late in rank.
BeamSearch::Step first_step(BeamSearch& search) {
  return search.step({cand(0, 4, -0.5f), cand(0, 1, -0.1f, true), cand(0, 3, -0.3f, true), cand(0, 2, -0.2f)},
                     0, 100);
}

TEST(BeamSearchSteps, BestCandidatesRunOnAndOnlyTheTopWidthMayFinish) {
  BeamSearch search(2, 1.0f, EarlyStopping::heuristic, 10, 1);
  EXPECT_EQ(search.candidates_kept(), 4);
  auto s = first_step(search);
  EXPECT_EQ(tokens_of(s.running), (std::vector<int32_t>{2, 4}));
  ASSERT_EQ(s.finished.size(), 1u);  // token 3 ranks third: not among the top 2
  EXPECT_EQ(s.finished[0].last.token, 1);
  EXPECT_DOUBLE_EQ(s.finished[0].score, -0.1f / 1.0);
  EXPECT_FALSE(s.done);
}

TEST(BeamSearchSteps, EarlyStoppingTrueEndsWhenWidthHypothesesFinished) {
  BeamSearch search(2, 1.0f, EarlyStopping::when_full, 10, 1);
  first_step(search);
  // Beam 0 (cum -0.2) runs on better than anything that ends, but the heap is now full.
  auto s = search.step({cand(0, 6, -0.25f), cand(0, 5, -0.3f, true), cand(1, 7, -0.55f, true)}, 1, 200);
  ASSERT_EQ(s.finished.size(), 1u);
  EXPECT_NEAR(s.finished[0].score, -0.3 / 2, 1e-7);
  EXPECT_TRUE(s.done);
  auto r = search.results();
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].last.token, 1);
  EXPECT_EQ(r[1].last.token, 5);
}

TEST(BeamSearchSteps, EarlyStoppingFalseGoesOnWhileARunningBeamCanStillWin) {
  BeamSearch search(2, 1.0f, EarlyStopping::heuristic, 10, 1);
  first_step(search);
  auto s = search.step({cand(0, 6, -0.25f), cand(0, 5, -0.3f, true), cand(1, 7, -0.55f, true)}, 1, 200);
  EXPECT_FALSE(s.done);  // -0.25 / 2 beats the worst finished, -0.3 / 2
  const int64_t evictable = s.finished[0].key;
  s = search.step({cand(0, 8, -0.27f, true), cand(0, 9, -0.9f)}, 2, 300);
  ASSERT_EQ(s.finished.size(), 1u);
  ASSERT_EQ(s.evicted.size(), 1u);
  EXPECT_EQ(s.evicted[0], evictable);  // -0.27 / 3 pushed -0.3 / 2 out
  EXPECT_TRUE(s.done);                  // -0.9 / 3 cannot beat -0.1 any more
  auto r = search.results();
  EXPECT_EQ(r[0].last.token, 8);
  EXPECT_EQ(r[1].last.token, 1);
}

TEST(BeamSearchSteps, NeverJudgesAtTheLongestLength) {
  BeamSearch search(2, 1.0f, EarlyStopping::never, 10, 1);
  first_step(search);
  search.step({cand(0, 6, -0.25f), cand(0, 5, -0.3f, true), cand(1, 7, -0.55f, true)}, 1, 200);
  // -0.9 / 3 loses at the current length, but -0.9 / 10 could still win at the longest.
  auto s = search.step({cand(0, 8, -0.27f, true), cand(0, 9, -0.9f)}, 2, 300);
  EXPECT_FALSE(s.done);
}

TEST(BeamSearchSteps, LengthPenaltyDividesByLengthToThePower) {
  BeamSearch search(2, 2.0f, EarlyStopping::when_full, 10, 1);
  search.step({cand(0, 1, -0.5f), cand(0, 2, -0.6f)}, 0, 0);
  auto s = search.step({cand(0, 3, -0.8f, true), cand(1, 4, -0.9f)}, 1, 10);
  ASSERT_EQ(s.finished.size(), 1u);
  EXPECT_NEAR(s.finished[0].score, -0.8 / 4.0, 1e-7);
}

TEST(BeamSearchSteps, TheLengthLimitFinishesTheBestWidthCandidates) {
  BeamSearch search(2, 1.0f, EarlyStopping::heuristic, 2, 0);
  search.step({cand(0, 1, -0.5f), cand(0, 2, -0.6f)}, 0, 0);
  auto s = search.step({cand(0, 3, -0.7f, true), cand(1, 4, -0.65f, true), cand(0, 5, -0.9f, true)}, 1, 10);
  EXPECT_TRUE(s.done);
  EXPECT_TRUE(s.running.empty());
  auto r = search.results();
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].last.token, 4);
  EXPECT_EQ(r[1].last.token, 3);
  EXPECT_EQ(r[0].n_generated, 2);
}

}  // namespace
}  // namespace kvmesh
