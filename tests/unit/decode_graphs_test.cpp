// Decode graphs on the CPU backend (ops recorded and replayed): every decode step of mixed traffic
// (greedy with log-probs, seeded samples, beam search, preemption through the host tier) gives
// exactly the tokens and log-probs of eager steps, over several batch-size buckets; and when a
// recording fails, steps still run over their bucket's rows (the collective sizes of a peer that
// replays) and give the same tokens.
#include <gtest/gtest.h>

#include "engine_fixture.h"
#include "worker/backend_factory.h"
#include "worker/decode_graphs.h"
#include "worker/recording_backend.h"

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

// min_graphs: decode graphs the graph engine must have recorded.
void run_both_and_compare(const EngineOptions& base, int min_graphs = 4) {
  EngineOptions eager = base, graphs = base;
  eager.recordings_fail_from_rows = 0;
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
  EXPECT_GE(graph_worker->n_decode_graphs(), min_graphs) << "decode steps of several sizes";
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

// The traffic's first decode batch is the largest, so a failure from 8 rows on stops recording
// before any graph exists: every covered step then runs eagerly over its padded bucket.
TEST(DecodeGraphs, StepsAfterAFailedRecordingEqualEagerSteps) {
  EngineOptions o;
  o.recordings_fail_from_rows = 8;
  run_both_and_compare(o, 0);
}

// What the layers of each covered step are run over, recorded or not.
struct LayerCall {
  int64_t rows;
  int32_t padded_rows;
};

class FailingRecordings : public ::testing::Test {
 protected:
  static constexpr int64_t kWidth = 4;
  void SetUp() override { make(/*fail_from_key=*/4, nullptr); }
  // Graphs over a recording backend whose recordings from fail_from_key rows fail (0: none do),
  // agreeing with imagined peers through `agree`.
  void make(int fail_from_key, DecodeGraphs::AgreeFn agree) {
    BackendOptions bo;
    bo.n_threads = 1;
    auto cpu = make_backend(bo);
    ASSERT_TRUE(cpu.is_ok()) << cpu.status().to_string();
    graphs_.reset();
    backend_ = make_recording_backend(std::move(cpu).value(), fail_from_key);
    graphs_ = std::make_unique<DecodeGraphs>(*backend_, LayerWidths{kWidth, kWidth, kWidth, kWidth, kWidth}, 64,
                                             std::move(agree));
    ASSERT_TRUE(graphs_->allocate().is_ok());
  }
  // A decode batch of n sequences, one token each.
  static BatchLayout decode_batch(int32_t n) {
    BatchLayout b;
    b.block_size = 16;
    for (int32_t i = 0; i < n; ++i) {
      b.seqs.push_back(SeqSpan{i, 1, 3, nullptr});
      b.positions.push_back(3);
      b.slots.push_back(i * 16 + 3);
    }
    return b;
  }
  // Runs one step over x (n rows of kWidth, row r all r + 1); the layers double x.
  Status step(int32_t n, std::vector<float>* x) {
    x->assign(static_cast<size_t>(n * kWidth), 0.0f);
    for (int32_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < kWidth; ++c) (*x)[static_cast<size_t>(r * kWidth + c)] = static_cast<float>(r + 1);
    return graphs_->run(decode_batch(n), KvPoolView{}, x->data(),
                        [this](const BatchLayout& b, KvPoolView, int64_t rows, float* gx, const LayerScratch&) {
                          calls_.push_back({rows, b.padded_rows});
                          const TensorView v = TensorView::of(gx, {rows, kWidth});
                          backend_->add(v, v);
                        });
  }
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<DecodeGraphs> graphs_;
  std::vector<LayerCall> calls_;
};

void expect_rows(const std::vector<LayerCall>& calls, const std::vector<int64_t>& want) {
  ASSERT_EQ(calls.size(), want.size());
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(calls[i].rows, want[i]) << "call " << i;
    EXPECT_EQ(calls[i].padded_rows, want[i]) << "call " << i;
  }
}

// A bucket's first step runs eagerly, its second records; after a failed recording nothing more
// is recorded, graphs already recorded still replay, and every other step runs over its bucket.
TEST_F(FailingRecordings, EveryCoveredStepRunsOverItsBucketRecordedOrNot) {
  std::vector<float> x;
  ASSERT_TRUE(step(2, &x).is_ok());  // bucket 2: eagerly first
  EXPECT_EQ(graphs_->n_recorded(), 0);
  ASSERT_TRUE(step(2, &x).is_ok());  // recorded, then replayed
  ASSERT_TRUE(step(2, &x).is_ok());  // replayed
  EXPECT_EQ(graphs_->n_recorded(), 1);
  EXPECT_TRUE(graphs_->recording_works());
  ASSERT_TRUE(step(3, &x).is_ok());  // bucket 4: eagerly first
  EXPECT_TRUE(graphs_->recording_works());
  ASSERT_TRUE(step(3, &x).is_ok());  // the recording fails, the step runs eagerly
  EXPECT_FALSE(graphs_->recording_works());
  ASSERT_TRUE(step(6, &x).is_ok());  // bucket 8: nothing more is recorded
  ASSERT_TRUE(step(6, &x).is_ok());
  ASSERT_TRUE(step(2, &x).is_ok());  // bucket 2 still replays
  EXPECT_EQ(graphs_->n_recorded(), 1);
  for (int32_t r = 0; r < 2; ++r) EXPECT_EQ(x[static_cast<size_t>(r * kWidth)], 2.0f * static_cast<float>(r + 1));
  // Replays call nothing: 2 eagerly, 2 recorded, 4 eagerly, 4 recorded (failed) and eagerly, 8 twice.
  expect_rows(calls_, {2, 2, 4, 4, 4, 8, 8});
}

TEST_F(FailingRecordings, EagerStepsOverABucketGiveTheRowsTheirResults) {
  for (int pass = 0; pass < 2; ++pass) {  // bucket 8 before its recording, then after it failed
    std::vector<float> x;
    ASSERT_TRUE(step(5, &x).is_ok());
    for (int32_t r = 0; r < 5; ++r)
      for (int64_t c = 0; c < kWidth; ++c)
        EXPECT_EQ(x[static_cast<size_t>(r * kWidth + c)], 2.0f * static_cast<float>(r + 1))
            << "pass " << pass << " at " << r << "," << c;
  }
  EXPECT_EQ(graphs_->n_recorded(), 0);
  EXPECT_FALSE(graphs_->recording_works());
}

// A graph is used only where every TP rank recorded it: a peer's failure turns graphs off here too,
// and the peers are asked once per recording, with this rank's own answer.
TEST_F(FailingRecordings, APeerThatCouldNotRecordTurnsRecordingOffHereToo) {
  std::vector<bool> asked;
  make(/*fail_from_key=*/0, [&asked](bool recorded_here) {
    asked.push_back(recorded_here);
    return asked.size() < 2;  // the peers recorded the first graph, not the second
  });
  std::vector<float> x;
  ASSERT_TRUE(step(1, &x).is_ok());  // bucket 1: eagerly, then recorded everywhere
  ASSERT_TRUE(step(1, &x).is_ok());
  ASSERT_TRUE(step(4, &x).is_ok());  // bucket 4: eagerly, then recorded here but not on a peer
  ASSERT_TRUE(step(4, &x).is_ok());
  ASSERT_TRUE(step(4, &x).is_ok());  // eagerly again, without asking
  ASSERT_TRUE(step(1, &x).is_ok());  // bucket 1 still replays
  EXPECT_EQ(asked, (std::vector<bool>{true, true}));
  EXPECT_EQ(graphs_->n_recorded(), 1);
  EXPECT_FALSE(graphs_->recording_works());
  ASSERT_EQ(x.size(), static_cast<size_t>(kWidth));
  EXPECT_EQ(x[0], 2.0f);
  expect_rows(calls_, {1, 1, 4, 4, 4, 4});
}

TEST_F(FailingRecordings, ARecordingThatFailedHereIsReportedToThePeers) {
  std::vector<bool> asked;
  make(/*fail_from_key=*/2, [&asked](bool recorded_here) {
    asked.push_back(recorded_here);
    return recorded_here;
  });
  std::vector<float> x;
  ASSERT_TRUE(step(2, &x).is_ok());  // eagerly: nothing to agree on yet
  EXPECT_TRUE(asked.empty());
  ASSERT_TRUE(step(2, &x).is_ok());
  EXPECT_EQ(asked, (std::vector<bool>{false}));
  EXPECT_EQ(graphs_->n_recorded(), 0);
  EXPECT_EQ(x[0], 2.0f);
  EXPECT_EQ(x[static_cast<size_t>(kWidth)], 4.0f);
}

TEST(DecodeGraphs, RunBeforeAllocateIsAnError) {
  BackendOptions bo;
  bo.n_threads = 1;
  auto cpu = make_backend(bo);
  ASSERT_TRUE(cpu.is_ok());
  auto backend = make_recording_backend(std::move(cpu).value());
  DecodeGraphs graphs(*backend, LayerWidths{4, 4, 4, 4, 4}, 64);
  BatchLayout b;
  b.seqs.push_back(SeqSpan{0, 1, 0, nullptr});
  b.positions.push_back(0);
  b.slots.push_back(0);
  std::vector<float> x(4, 1.0f);
  EXPECT_FALSE(graphs.covers(b));
  const Status status = graphs.run(b, KvPoolView{}, x.data(), [](auto&&...) {});
  EXPECT_EQ(status.code(), StatusCode::internal) << status.to_string();
}

}  // namespace
}  // namespace kvmesh::testing
