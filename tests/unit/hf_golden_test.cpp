// The CPU engine reproduces Hugging Face transformers' GPT-2 numbers (tests/data/hf-gpt2-4l32d).
#include <gtest/gtest.h>

#include <cmath>

#include "engine_fixture.h"
#include "fixture_checks.h"
#include "golden_engine_checks.h"
#include "logit_edit_checks.h"

namespace kvmesh::testing {
namespace {

class HfGolden : public ::testing::Test {
 protected:
  void SetUp() override {
    golden_ = load_json_file(hf_fixture_dir() + "/golden.json");
    std::string error;
    engine_ = make_engine(hf_fixture_dir(), EngineOptions{}, &error);
    ASSERT_NE(engine_, nullptr) << error;
  }
  nlohmann::json golden_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(HfGolden, LogitEditsTakeEffect) { expect_logit_edits_take_effect(*engine_, golden_, 1e-5); }

TEST_F(HfGolden, PromptLogprobsAndLastTop20) { expect_golden_prompt_logprobs_and_top20(*engine_, golden_, 1e-4); }

TEST_F(HfGolden, GreedyTokensWhereMarginIsClear) {
  for (const auto& c : golden_["cases"]) {
    auto prompt = c["prompt"].get<std::vector<int32_t>>();
    GenerationRequest r = greedy_request(prompt, static_cast<int32_t>(c["greedy"].size()));
    r.sampling.n_logprobs = 0;
    auto out = generate_blocking(*engine_, r);
    ASSERT_TRUE(out.is_ok()) << out.status().to_string();
    expect_fixture_greedy_logprobs(out->token_ids, chosen_logprobs(out->logprobs), c, 1e-3, 1e-4);
    EXPECT_EQ(out->finish, FinishReason::length);
  }
}

}  // namespace
}  // namespace kvmesh::testing
