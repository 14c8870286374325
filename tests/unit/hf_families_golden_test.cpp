// The CPU engine reproduces the OPT and GPT-Neo references (tests/data/hf-opt-3l32d,
// hf-opt-untied-2l32d (a separate LM head), hf-gptneo-4l32d, made by tests/reference/hf_families_reference.py): prompt log-probs, top 20 and
// greedy tokens, with whole prompts in one step and with small pages and prefill chunks (GPT-Neo's
// window of 7 then spans pages and chunks), with every prompt batched together, and with decode
// steps replaying graphs recorded on the CPU backend.
#include <gtest/gtest.h>

#include <string>

#include "engine_fixture.h"
#include "golden_engine_checks.h"

namespace kvmesh::testing {
namespace {

struct FamilyRun {
  const char* dir;
  int32_t block_size;
  int32_t max_batch_tokens;
  bool record_graphs = false;  // decode steps replay graphs recorded on the CPU backend
};

std::string run_name(const ::testing::TestParamInfo<FamilyRun>& info) {
  std::string s = std::string(info.param.dir) + "_b" + std::to_string(info.param.block_size) + "_t" +
                  std::to_string(info.param.max_batch_tokens) + (info.param.record_graphs ? "_graphs" : "");
  for (char& ch : s)
    if (ch == '-') ch = '_';
  return s;
}

class HfFamilies : public ::testing::TestWithParam<FamilyRun> {
 protected:
  void SetUp() override {
    const std::string dir = std::string(KVMESH_TEST_DATA_DIR) + "/" + GetParam().dir;
    golden_ = load_json_file(dir + "/golden.json");
    EngineOptions o;
    o.block_size = GetParam().block_size;
    o.max_batch_tokens = GetParam().max_batch_tokens;
    o.record_graphs = GetParam().record_graphs;
    std::string error;
    engine_ = make_engine(dir, o, &error);
    ASSERT_NE(engine_, nullptr) << error;
  }
  nlohmann::json golden_;
  std::unique_ptr<Engine> engine_;
};

TEST_P(HfFamilies, PromptLogprobsAndLastTop20) { expect_golden_prompt_logprobs_and_top20(*engine_, golden_, 1e-4); }

TEST_P(HfFamilies, GreedyTokensWhereMarginIsClear) { expect_golden_greedy(*engine_, golden_, 1e-3, 1e-4); }

TEST_P(HfFamilies, GreedyTokensBatchedTogether) {
  std::vector<GenerationRequest> reqs;
  for (const auto& c : golden_["cases"]) {
    reqs.push_back(greedy_request(c["prompt"].get<std::vector<int32_t>>(), static_cast<int32_t>(c["greedy"].size())));
    reqs.back().sampling.n_logprobs = 0;
  }
  const auto outs = run_all(*engine_, reqs);
  for (size_t i = 0; i < outs.size(); ++i) {
    ASSERT_TRUE(outs[i].error.empty()) << outs[i].error;
    expect_fixture_greedy_logprobs(outs[i].token_ids, chosen_logprobs(outs[i].logprobs), golden_["cases"][i], 1e-3,
                                   1e-4, "case " + std::to_string(i));
  }
}

INSTANTIATE_TEST_SUITE_P(Families, HfFamilies,
                         ::testing::Values(FamilyRun{"hf-opt-3l32d", 16, 2048}, FamilyRun{"hf-opt-3l32d", 4, 8},
                                           FamilyRun{"hf-opt-untied-2l32d", 16, 2048},
                                           FamilyRun{"hf-gptneo-4l32d", 16, 2048},
                                           FamilyRun{"hf-gptneo-4l32d", 4, 5},
                                           FamilyRun{"hf-gptneo-4l32d", 4, 2048, true}),
                         run_name);

}  // namespace
}  // namespace kvmesh::testing
