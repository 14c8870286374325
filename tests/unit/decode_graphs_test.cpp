// Decode graphs on the CPU backend (ops recorded and replayed): every decode step of mixed traffic
// (greedy with log-probs, seeded samples, beam search, preemption through the host tier) gives
// exactly the tokens and log-probs of eager steps, over several batch-size buckets.
#include <gtest/gtest.h>

#include "engine_fixture.h"
#include "worker/decode_graphs.h"

namespace kvmesh::testing {
namespace {

std::vector<int32_t> prompt_of(int32_t n, int32_t salt) {
  std::vector<int32_t> p;
  for (int32_t i = 0; i < n; ++i) p.push_back((i * 7919 + salt * 104729 + 13) % 50000);
  return p;
}

// Requests of different lengths, so the decode batch shrinks step by step through the buckets.
std::vector<GenerationRequest> traffic() {
  std::vector<GenerationRequest> reqs;
  const auto cases = load_json_file(hf_fixture_dir() + "/golden.json")["cases"];
  int32_t i = 0;
  for (const auto& c : cases) {
    GenerationRequest r = greedy_request(c["prompt"].get<std::vector<int32_t>>(), 6 + 5 * i++);
    r.sampling.n_logprobs = 5;
    reqs.push_back(r);
  }
  for (int32_t k = 0; k < 8; ++k) {
    GenerationRequest r;
    r.prompt_ids = prompt_of(5 + 9 * k, k);
    r.max_tokens = 4 + 2 * k;
    r.n = k % 3 == 0 ? 3 : 1;
    r.best_of = r.n;
    r.sampling.temperature = 0.8f;
    r.sampling.top_p = 0.9f;
    r.sampling.seed = 100 + static_cast<uint64_t>(k);
    r.sampling.n_logprobs = k % 2 == 0 ? 2 : -1;
    r.ignore_eos = true;
    reqs.push_back(r);
  }
  GenerationRequest beams;
  beams.prompt_ids = prompt_of(20, 99);
  beams.max_tokens = 10;
  beams.n = 3;
  beams.best_of = 3;
  beams.beam_search = true;
  beams.ignore_eos = true;
  reqs.push_back(beams);
  return reqs;
}

void expect_identical(const PositionLogprobs& a, const PositionLogprobs& b, const std::string& what) {
  EXPECT_EQ(a.chosen.token, b.chosen.token) << what;
  EXPECT_EQ(a.chosen.logprob, b.chosen.logprob) << what;
  ASSERT_EQ(a.top.size(), b.top.size()) << what;
  for (size_t i = 0; i < a.top.size(); ++i) {
    EXPECT_EQ(a.top[i].token, b.top[i].token) << what;
    EXPECT_EQ(a.top[i].logprob, b.top[i].logprob) << what;
  }
}

void run_both_and_compare(const EngineOptions& base) {
  EngineOptions eager = base, graphs = base;
  graphs.record_graphs = true;
  const Worker* eager_worker = nullptr;
  const Worker* graph_worker = nullptr;
  auto a = make_engine(hf_fixture_dir(), eager, nullptr, &eager_worker);
  auto b = make_engine(hf_fixture_dir(), graphs, nullptr, &graph_worker);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const auto want = run_groups(*a, traffic());
  const auto got = run_groups(*b, traffic());
  EXPECT_EQ(eager_worker->n_decode_graphs(), 0);
  EXPECT_GE(graph_worker->n_decode_graphs(), 4) << "decode steps of several sizes";
  std::printf("decode graphs recorded: %d; preemptions eager %lld, graphs %lld\n",
              graph_worker->n_decode_graphs(),
              static_cast<long long>(a->scheduler().stats().n_preemptions),
              static_cast<long long>(b->scheduler().stats().n_preemptions));
  ASSERT_EQ(got.size(), want.size());
  for (size_t r = 0; r < want.size(); ++r) {
    ASSERT_EQ(got[r].size(), want[r].size());
    for (size_t k = 0; k < want[r].size(); ++k) {
      const std::string what = "request " + std::to_string(r) + " sequence " + std::to_string(k);
      EXPECT_FALSE(want[r][k].token_ids.empty()) << what;
      EXPECT_EQ(got[r][k].token_ids, want[r][k].token_ids) << what;
      EXPECT_EQ(got[r][k].score, want[r][k].score) << what;
      ASSERT_EQ(got[r][k].logprobs.size(), want[r][k].logprobs.size()) << what;
      for (size_t i = 0; i < want[r][k].logprobs.size(); ++i)
        expect_identical(got[r][k].logprobs[i], want[r][k].logprobs[i], what + " token " + std::to_string(i));
    }
  }
  EXPECT_EQ(b->scheduler().blocks().n_used(), 0);
}

TEST(DecodeGraphs, BucketsArePowersOfTwoThenMultiplesOfEight) {
  EXPECT_EQ(DecodeGraphs::bucket_rows(1), 1);
  EXPECT_EQ(DecodeGraphs::bucket_rows(2), 2);
  EXPECT_EQ(DecodeGraphs::bucket_rows(3), 4);
  EXPECT_EQ(DecodeGraphs::bucket_rows(5), 8);
  EXPECT_EQ(DecodeGraphs::bucket_rows(9), 16);
  EXPECT_EQ(DecodeGraphs::bucket_rows(17), 24);
  EXPECT_EQ(DecodeGraphs::bucket_rows(DecodeGraphs::kMaxRows), DecodeGraphs::kMaxRows);
}

TEST(DecodeGraphs, ReplayedStepsEqualEagerSteps) { run_both_and_compare(EngineOptions{}); }

TEST(DecodeGraphs, ReplayedStepsEqualEagerStepsThroughPreemption) {
  EngineOptions o;
  o.device_bytes = 24 * (16 * 4 * 2 * 32 * 4);  // 24 pages of the fixture model
  o.host_bytes = 64ll << 20;
  run_both_and_compare(o);
}

}  // namespace
}  // namespace kvmesh::testing
