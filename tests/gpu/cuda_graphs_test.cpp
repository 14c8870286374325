// Decode graphs on the GPU: steps replayed from captured CUDA graphs give the tokens and log-probs
// of eager steps (--enforce-eager), over several batch-size buckets, for the HF fixture and for a
// GPT-2 124M shape with a context long enough that attention splits over the sequence. Replays
// round differently where cuBLAS picks another kernel for the padded row count (batches past the
// few-rows kernel's) and where attention splits a context over the shares its graph was recorded
// for rather than over the context's own: with activations rounded to bf16 between ops, log-probs
// move by a few 1e-3 (up to 5.5e-3 seen on an H200), so they agree within 2e-2, and tokens until
// the first step whose eager top-2 margin is under 4e-2. Kernels launched to overlap the kernel
// before them give the numbers of kernels launched one after another. Skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>

#include "engine_fixture.h"
#include "worker/cuda/cuda_backend.h"

namespace kvmesh::testing {
namespace {

constexpr double kLogprobTolerance = 2e-2;
constexpr double kClearMargin = 4e-2;  // twice the tolerance: two log-probs each that far off may swap

std::vector<GenerationOutput> run(const std::string& model, bool eager,
                                  const std::vector<GenerationRequest>& reqs, int* n_graphs,
                                  bool overlap_launches = true) {
  EngineOptions o;
  o.device = DeviceKind::cuda;
  o.kv_dtype = DType::bf16;
  o.device_bytes = 1ll << 30;
  o.eager = eager;
  o.cuda.overlap_launches = overlap_launches;
  std::string error;
  const Worker* worker = nullptr;
  auto engine = make_engine(model, o, &error, &worker);
  EXPECT_NE(engine, nullptr) << error;
  if (engine == nullptr) return {};
  auto out = run_all(*engine, reqs);
  *n_graphs = worker->n_decode_graphs();
  return out;
}

void expect_same_decode(const std::vector<GenerationOutput>& graphs, const std::vector<GenerationOutput>& eager) {
  ASSERT_EQ(graphs.size(), eager.size());
  for (size_t r = 0; r < eager.size(); ++r) {
    ASSERT_TRUE(eager[r].error.empty()) << eager[r].error;
    ASSERT_TRUE(graphs[r].error.empty()) << graphs[r].error;
    ASSERT_EQ(graphs[r].token_ids.size(), eager[r].token_ids.size());
    for (size_t i = 0; i < eager[r].token_ids.size(); ++i) {
      const PositionLogprobs& want = eager[r].logprobs[i];
      const PositionLogprobs& got = graphs[r].logprobs[i];
      EXPECT_NEAR(got.chosen.logprob, want.chosen.logprob, kLogprobTolerance) << "request " << r << " step " << i;
      EXPECT_EQ(got.chosen.token, want.chosen.token) << "request " << r << " step " << i;
      const double margin = want.top.size() >= 2 ? want.top[0].logprob - want.top[1].logprob : 1.0;
      if (margin < kClearMargin || got.chosen.token != want.chosen.token) break;  // may part from here
    }
  }
}

GenerationRequest logged_greedy(const std::vector<int32_t>& prompt, int32_t max_tokens) {
  GenerationRequest r = greedy_request(prompt, max_tokens);
  r.sampling.n_logprobs = 2;
  return r;
}

TEST(CudaGraphs, FixtureDecodeEqualsEager) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA GPU usable (" << cuda_no_device_reason() << "): decode graphs need one";
  std::vector<GenerationRequest> reqs;
  int32_t k = 0;
  const nlohmann::json golden = load_json_file(hf_fixture_dir() + "/golden.json");  // outlives the loop
  for (const auto& c : golden["cases"])
    reqs.push_back(logged_greedy(c["prompt"].get<std::vector<int32_t>>(), 8 + 8 * k++));
  int graphs_recorded = 0, eager_recorded = 0;
  const auto graphs = run(hf_fixture_dir(), false, reqs, &graphs_recorded);
  const auto eager = run(hf_fixture_dir(), true, reqs, &eager_recorded);
  EXPECT_GE(graphs_recorded, 3) << "the batch shrinks through several buckets";
  EXPECT_EQ(eager_recorded, 0);
  ASSERT_EQ(graphs.size(), 5u);
  expect_same_decode(graphs, eager);
}

// Kernels launched to overlap the kernel before them change no number: every kernel of kvmesh's
// sums in a fixed order and cuBLAS gives the same bits for the same shapes on one GPU, so a kernel
// that read what the kernel before it had not yet written would show here as a difference. The
// fixture's batches stay within the few-rows kernels; graphs and eager steps both.
TEST(CudaGraphs, OverlappingLaunchesChangeNoNumber) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA GPU usable (" << cuda_no_device_reason() << "): decode graphs need one";
  std::vector<GenerationRequest> reqs;
  int32_t k = 0;
  const nlohmann::json golden = load_json_file(hf_fixture_dir() + "/golden.json");  // outlives the loop
  for (const auto& c : golden["cases"])
    reqs.push_back(logged_greedy(c["prompt"].get<std::vector<int32_t>>(), 6 + 4 * k++));
  for (const bool eager : {false, true}) {
    int recorded = 0;
    const auto overlapped = run(hf_fixture_dir(), eager, reqs, &recorded, true);
    const auto serial = run(hf_fixture_dir(), eager, reqs, &recorded, false);
    ASSERT_EQ(overlapped.size(), reqs.size());
    ASSERT_EQ(serial.size(), reqs.size());
    for (size_t r = 0; r < reqs.size(); ++r) {
      const std::string at = std::string(eager ? "eager" : "graphs") + ", request " + std::to_string(r);
      ASSERT_TRUE(overlapped[r].error.empty()) << at << ": " << overlapped[r].error;
      ASSERT_TRUE(serial[r].error.empty()) << at << ": " << serial[r].error;
      EXPECT_EQ(overlapped[r].token_ids, serial[r].token_ids) << at;
      ASSERT_EQ(overlapped[r].logprobs.size(), serial[r].logprobs.size()) << at;
      for (size_t i = 0; i < serial[r].logprobs.size(); ++i)
        EXPECT_EQ(overlapped[r].logprobs[i].chosen.logprob, serial[r].logprobs[i].chosen.logprob)
            << at << " step " << i;
    }
  }
}

TEST(CudaGraphs, LongContextSplitAttentionEqualsEager) {
  if (cuda_device_count() == 0)
    GTEST_SKIP() << "no CUDA GPU usable (" << cuda_no_device_reason() << "): decode graphs need one";
  std::vector<GenerationRequest> reqs;
  for (int32_t n : {700, 9, 300, 40}) {
    std::vector<int32_t> prompt;
    for (int32_t i = 0; i < n; ++i) prompt.push_back((i * 7919 + n) % 50000);
    reqs.push_back(logged_greedy(prompt, 24));
  }
  int graphs_recorded = 0, eager_recorded = 0;
  const auto graphs = run("synthetic:gpt2-124m", false, reqs, &graphs_recorded);
  const auto eager = run("synthetic:gpt2-124m", true, reqs, &eager_recorded);
  EXPECT_GE(graphs_recorded, 1);
  expect_same_decode(graphs, eager);
}

}  // namespace
}  // namespace kvmesh::testing
