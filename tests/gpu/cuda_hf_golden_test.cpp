// The CUDA engine (bf16 weights and KV pages, or f16 ones; fp32 compute) reproduces Hugging Face
// transformers' GPT-2 numbers (tests/data/hf-gpt2-4l32d) within bf16 tolerances: prompt log-probs within 0.1 of
// the fixture (fp32 CPU: 1e-4), greedy tokens identical at every step where HF's margin between the
// two best tokens exceeds 0.1 (after a nearer step the continuations may legitimately part), and
// each generated token's log-prob within 0.1 of HF's until then.
// Skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "engine_fixture.h"
#include "fixture_checks.h"
#include "worker/cuda/cuda_backend.h"

namespace kvmesh::testing {
namespace {

constexpr double kLogprobTolerance = 0.1;
constexpr double kClearMargin = 0.1;

// The dtype of the weights and of the KV pages.
class CudaHfGolden : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA GPU usable (" << cuda_no_device_reason() << "): the CUDA golden test needs one";
    golden_ = load_json_file(hf_fixture_dir() + "/golden.json");
    EngineOptions o;
    o.device = DeviceKind::cuda;
    o.kv_dtype = GetParam();
    o.weight_dtype = GetParam();
    std::string error;
    engine_ = make_engine(hf_fixture_dir(), o, &error);
    ASSERT_NE(engine_, nullptr) << error;
  }
  nlohmann::json golden_;
  std::unique_ptr<Engine> engine_;
};

TEST_P(CudaHfGolden, PromptLogprobs) {
  for (const auto& c : golden_["cases"]) {
    auto prompt = c["prompt"].get<std::vector<int32_t>>();
    GenerationRequest r = greedy_request(prompt, 1);
    r.prompt_logprobs = 1;
    auto out = generate_blocking(*engine_, r);
    ASSERT_TRUE(out.is_ok()) << out.status().to_string();
    std::vector<double> got;
    for (size_t i = 0; i < out->prompt_logprobs.size(); ++i) {
      EXPECT_EQ(out->prompt_logprobs[i].chosen.token, prompt[i + 1]);
      got.push_back(out->prompt_logprobs[i].chosen.logprob);
    }
    expect_fixture_prompt_logprobs(got, c, kLogprobTolerance);
  }
}

TEST_P(CudaHfGolden, GreedyTokensWhereMarginIsClear) {
  for (const auto& c : golden_["cases"]) {
    auto prompt = c["prompt"].get<std::vector<int32_t>>();
    GenerationRequest r = greedy_request(prompt, static_cast<int32_t>(c["greedy"].size()));
    r.sampling.n_logprobs = 0;
    auto out = generate_blocking(*engine_, r);
    ASSERT_TRUE(out.is_ok()) << out.status().to_string();
    expect_fixture_greedy_logprobs(out->token_ids, chosen_logprobs(out->logprobs), c, kClearMargin, kLogprobTolerance);
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaHfGolden, ::testing::Values(DType::bf16, DType::f16),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(info.param == DType::f16 ? "f16" : "bf16");
                         });

}  // namespace
}  // namespace kvmesh::testing
