// The CPU engine reproduces Hugging Face transformers' GPT-2 numbers (tests/data/hf-gpt2-4l32d).
#include <gtest/gtest.h>

#include <cmath>

#include "engine_fixture.h"
#include "fixture_checks.h"
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

TEST_F(HfGolden, PromptLogprobsAndLastTop20) {
  for (const auto& c : golden_["cases"]) {
    auto prompt = c["prompt"].get<std::vector<int32_t>>();
    GenerationRequest r = greedy_request(prompt, 1);
    r.prompt_logprobs = 5;
    r.sampling.n_logprobs = 20;
    auto out = generate_blocking(*engine_, r);
    ASSERT_TRUE(out.is_ok()) << out.status().to_string();
    std::vector<double> got;
    for (size_t i = 0; i < out->prompt_logprobs.size(); ++i) {
      EXPECT_EQ(out->prompt_logprobs[i].chosen.token, prompt[i + 1]);
      got.push_back(out->prompt_logprobs[i].chosen.logprob);
    }
    expect_fixture_prompt_logprobs(got, c, 1e-4);
    const auto top_ids = c["last_top20"]["ids"].get<std::vector<int32_t>>();
    const auto top_lps = c["last_top20"]["logprobs"].get<std::vector<double>>();
    ASSERT_EQ(out->logprobs.size(), 1u);
    const auto& top = out->logprobs[0].top;
    ASSERT_EQ(top.size(), 20u);
    for (size_t i = 0; i < 20; ++i) {
      EXPECT_NEAR(top[i].logprob, top_lps[i], 1e-4) << "rank " << i;
      // Ids must agree unless two neighbours are too close to order reliably.
      const bool close_to_neighbour =
          (i > 0 && std::abs(top_lps[i] - top_lps[i - 1]) < 2e-4) ||
          (i + 1 < 20 && std::abs(top_lps[i] - top_lps[i + 1]) < 2e-4);
      if (!close_to_neighbour) {
        EXPECT_EQ(top[i].token, top_ids[i]) << "rank " << i;
      }
    }
  }
}

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
