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

TEST_F(HfGolden, PromptLogprobsAndLastTop20) { expect_golden_prompt_logprobs(*engine_, golden_, 1e-4); }

TEST_F(HfGolden, GreedyTokensWhereMarginIsClear) { expect_golden_greedy(*engine_, golden_, 1e-3, 1e-4); }

}  // namespace
}  // namespace kvmesh::testing
