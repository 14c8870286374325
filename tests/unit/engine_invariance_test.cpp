// Invariants of the CPU engine: page size, batching, chunked prefill and preemption never change
// a sequence's tokens or log-probs.
#include <gtest/gtest.h>

#include <cmath>

#include "engine_fixture.h"

namespace kvmesh::testing {
namespace {

std::vector<int32_t> golden_prompt(int index) {
  static const nlohmann::json golden = load_json_file(hf_fixture_dir() + "/golden.json");
  return golden["cases"][index]["prompt"].get<std::vector<int32_t>>();
}

GenerationRequest probe_request(bool sampled) {
  GenerationRequest r;
  r.prompt_ids = golden_prompt(2);  // 33 tokens
  r.max_tokens = 24;
  r.ignore_eos = true;
  r.prompt_logprobs = 3;
  r.sampling.n_logprobs = 5;
  if (sampled) {
    r.sampling.temperature = 0.9f;
    r.sampling.top_p = 0.95f;
    r.sampling.top_k = 50;
    r.sampling.seed = 1234;
  } else {
    r.sampling.temperature = 0.0f;
  }
  return r;
}

// Other traffic of assorted lengths to batch the probe with.
std::vector<GenerationRequest> other_requests() {
  std::vector<GenerationRequest> reqs;
  const int lengths[] = {1, 7, 100, 200};
  for (int i = 0; i < 4; ++i) {
    GenerationRequest r;
    auto p = golden_prompt(i + (i >= 2 ? 1 : 0));
    r.prompt_ids.assign(p.begin(), p.begin() + std::min<size_t>(p.size(), lengths[i]));
    r.max_tokens = 5 + 7 * i;
    r.ignore_eos = true;
    r.sampling.temperature = i % 2 ? 0.7f : 0.0f;
    r.sampling.seed = 99 + i;
    reqs.push_back(r);
  }
  return reqs;
}

void expect_same(const GenerationOutput& a, const GenerationOutput& b, const std::string& what) {
  ASSERT_EQ(a.token_ids, b.token_ids) << what;
  ASSERT_EQ(a.logprobs.size(), b.logprobs.size()) << what;
  for (size_t i = 0; i < a.logprobs.size(); ++i) {
    EXPECT_NEAR(a.logprobs[i].chosen.logprob, b.logprobs[i].chosen.logprob, 1e-5) << what << " token " << i;
    ASSERT_EQ(a.logprobs[i].top.size(), b.logprobs[i].top.size());
    for (size_t k = 0; k < a.logprobs[i].top.size(); ++k)
      EXPECT_NEAR(a.logprobs[i].top[k].logprob, b.logprobs[i].top[k].logprob, 1e-5) << what;
  }
  ASSERT_EQ(a.prompt_logprobs.size(), b.prompt_logprobs.size()) << what;
  for (size_t i = 0; i < a.prompt_logprobs.size(); ++i)
    EXPECT_NEAR(a.prompt_logprobs[i].chosen.logprob, b.prompt_logprobs[i].chosen.logprob, 1e-5)
        << what << " prompt position " << i;
  EXPECT_EQ(a.text, b.text) << what;
}

GenerationOutput run_probe(const EngineOptions& o, bool sampled, bool with_others) {
  auto engine = make_engine(hf_fixture_dir(), o);
  EXPECT_NE(engine, nullptr);
  if (!engine) return {};
  std::vector<GenerationRequest> reqs;
  if (with_others) reqs = other_requests();
  reqs.insert(reqs.begin() + static_cast<std::ptrdiff_t>(reqs.size() / 2), probe_request(sampled));
  auto outs = run_all(*engine, reqs);
  for (const auto& out : outs) EXPECT_NE(out.finish, FinishReason::error) << out.error;
  return outs[reqs.size() / 2];
}

class EngineInvariance : public ::testing::TestWithParam<bool> {};

TEST_P(EngineInvariance, PageSizeAndBatchingDoNotChangeResults) {
  const bool sampled = GetParam();
  const GenerationOutput reference = run_probe(EngineOptions{}, sampled, false);
  ASSERT_EQ(reference.token_ids.size(), 24u);
  ASSERT_EQ(reference.prompt_logprobs.size(), 32u);
  for (int block_size : {1, 16, 64}) {
    for (bool with_others : {false, true}) {
      EngineOptions o;
      o.block_size = block_size;
      expect_same(reference, run_probe(o, sampled, with_others),
                  "block_size " + std::to_string(block_size) + (with_others ? " batched" : " alone"));
    }
  }
}

TEST_P(EngineInvariance, ChunkedPrefillAndPreemptionDoNotChangeResults) {
  const bool sampled = GetParam();
  const GenerationOutput reference = run_probe(EngineOptions{}, sampled, false);
  EngineOptions chunked;
  chunked.max_batch_tokens = 7;  // prompts arrive in 7-token chunks
  expect_same(reference, run_probe(chunked, sampled, true), "chunked prefill");

  // A pool of 6 pages of 16 tokens: three sequences that grow past their first page while the
  // probe holds 3 pages force the newest sequence out; it is recomputed later.
  EngineOptions tight;
  tight.device_bytes = 6 * 16 * 4 * 2 * 32 * 4;  // pages * tokens * layers * (K,V) * width * f32
  auto engine = make_engine(hf_fixture_dir(), tight);
  ASSERT_NE(engine, nullptr);
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 3; ++i) {
    GenerationRequest r;
    auto p = golden_prompt(3);
    r.prompt_ids.assign(p.begin() + i, p.begin() + i + 10);
    r.max_tokens = 30;
    r.ignore_eos = true;
    r.sampling.temperature = 0.0f;
    reqs.push_back(r);
  }
  reqs.push_back(probe_request(sampled));
  auto outs = run_all(*engine, reqs);
  EXPECT_GT(engine->scheduler().stats().n_preemptions, 0);
  expect_same(reference, outs.back(), "preempted");
  EXPECT_EQ(engine->scheduler().blocks().n_used(), 0);
}

INSTANTIATE_TEST_SUITE_P(GreedyAndSeeded, EngineInvariance, ::testing::Values(false, true));

}  // namespace
}  // namespace kvmesh::testing
