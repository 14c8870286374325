// The CPU engine with bf16 matrix weights (--dtype bf16): exactly the fp32 engine's answer when the
// checkpoint's weights are bf16 values already, and the Hugging Face fixture within bf16 tolerances
// otherwise.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "common/checkpoint_maker.h"
#include "engine_fixture.h"
#include "narrow_weights_golden.h"
#include "temp_dir.h"

namespace kvmesh::testing {
namespace {

// Measured on this fixture: prompt log-probs within 0.0010 of transformers', generated tokens'
// within 0.0020 (the fp32 engine: 1e-4).
constexpr double kLogprobTolerance = 0.01;
constexpr double kClearMargin = 0.1;

EngineOptions bf16_weights() {
  EngineOptions o;
  o.weight_dtype = DType::bf16;
  return o;
}

// The log-probs of a prompt's tokens (prompt_ids[1:]).
std::vector<double> prompt_logprobs(Engine& engine, const std::vector<int32_t>& prompt) {
  GenerationRequest r = greedy_request(prompt, 1);
  r.prompt_logprobs = 0;
  auto out = generate_blocking(engine, r);
  EXPECT_TRUE(out.is_ok()) << out.status().to_string();
  std::vector<double> lps;
  if (out.is_ok())
    for (const PositionLogprobs& p : out->prompt_logprobs) lps.push_back(p.chosen.logprob);
  return lps;
}

TEST(CpuBf16Weights, HfFixturePromptLogprobs) {
  std::string error;
  auto engine = make_engine(hf_fixture_dir(), bf16_weights(), &error);
  ASSERT_NE(engine, nullptr) << error;
  const nlohmann::json golden = load_json_file(hf_fixture_dir() + "/golden.json");
  expect_golden_prompt_logprobs(*engine, golden, kLogprobTolerance);
  // The weights really are narrowed: the fixture's fp32 weights are not all bf16 values, so some
  // log-prob moves by more than the fp32 engine's own rounding.
  auto fp32 = make_engine(hf_fixture_dir(), EngineOptions{}, &error);
  ASSERT_NE(fp32, nullptr) << error;
  const auto prompt = golden["cases"][2]["prompt"].get<std::vector<int32_t>>();
  const auto narrow = prompt_logprobs(*engine, prompt), wide = prompt_logprobs(*fp32, prompt);
  ASSERT_EQ(narrow.size(), wide.size());
  double max_moved = 0.0;
  for (size_t i = 0; i < narrow.size(); ++i) max_moved = std::max(max_moved, std::abs(narrow[i] - wide[i]));
  EXPECT_GT(max_moved, 1e-5);
}

TEST(CpuBf16Weights, HfFixtureGreedyTokensWhereMarginIsClear) {
  std::string error;
  auto engine = make_engine(hf_fixture_dir(), bf16_weights(), &error);
  ASSERT_NE(engine, nullptr) << error;
  expect_golden_greedy(*engine, load_json_file(hf_fixture_dir() + "/golden.json"), kClearMargin, kLogprobTolerance);
}

// Prompts of 1, 3, 40 and 70 tokens decoded together: every matrix path (one streamed row, slabs,
// square blocks, the LM head's one-row and tiled loops) meets the bf16 weights.
std::vector<GenerationRequest> mixed_requests() {
  std::vector<GenerationRequest> reqs;
  const int lengths[] = {1, 3, 40, 70};
  for (int i = 0; i < 4; ++i) {
    GenerationRequest r;
    for (int t = 0; t < lengths[i]; ++t) r.prompt_ids.push_back((t * 7919 + i * 131) % 50000);
    r.max_tokens = 6 + 3 * i;
    r.ignore_eos = true;
    r.prompt_logprobs = i % 2 == 0 ? 2 : -1;
    r.sampling.n_logprobs = 3;
    r.sampling.temperature = i % 2 ? 0.8f : 0.0f;
    r.sampling.seed = 7 + i;
    reqs.push_back(r);
  }
  return reqs;
}

// A checkpoint stored in bf16 loses nothing when placed as bf16, so the two engines must agree to
// the bit: same tokens, same log-probs (prompt and generated).
TEST(CpuBf16Weights, Bf16CheckpointGivesTheFp32EnginesAnswerExactly) {
  TempDir dir;
  CheckpointSpec spec;
  spec.out_dir = dir.path();
  spec.config = *preset_model_config("tiny");
  spec.dtype = DType::bf16;
  spec.seed = 5;
  spec.copy_tokenizer = false;
  ASSERT_TRUE(make_random_checkpoint(spec).is_ok());
  std::string error;
  auto fp32 = make_engine(dir.path(), EngineOptions{}, &error);
  ASSERT_NE(fp32, nullptr) << error;
  auto bf16 = make_engine(dir.path(), bf16_weights(), &error);
  ASSERT_NE(bf16, nullptr) << error;
  const auto want = run_all(*fp32, mixed_requests());
  const auto got = run_all(*bf16, mixed_requests());
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].token_ids, want[i].token_ids) << "request " << i;
    ASSERT_EQ(got[i].logprobs.size(), want[i].logprobs.size()) << "request " << i;
    for (size_t t = 0; t < got[i].logprobs.size(); ++t) {
      EXPECT_EQ(got[i].logprobs[t].chosen.logprob, want[i].logprobs[t].chosen.logprob) << "request " << i << " token " << t;
      ASSERT_EQ(got[i].logprobs[t].top.size(), want[i].logprobs[t].top.size());
      for (size_t k = 0; k < got[i].logprobs[t].top.size(); ++k)
        EXPECT_EQ(got[i].logprobs[t].top[k].token, want[i].logprobs[t].top[k].token);
    }
    ASSERT_EQ(got[i].prompt_logprobs.size(), want[i].prompt_logprobs.size()) << "request " << i;
    for (size_t t = 0; t < got[i].prompt_logprobs.size(); ++t)
      EXPECT_EQ(got[i].prompt_logprobs[t].chosen.logprob, want[i].prompt_logprobs[t].chosen.logprob)
          << "request " << i << " prompt position " << t;
  }
}

TEST(CpuBf16Weights, OtherDtypesAreRefusedByName) {
  for (DType dtype : {DType::f16, DType::i8}) {
    EngineOptions o;
    o.weight_dtype = dtype;
    std::string error;
    EXPECT_EQ(make_engine(hf_fixture_dir(), o, &error), nullptr) << dtype_name(dtype);
    EXPECT_NE(error.find("f32 or bf16"), std::string::npos) << error;
  }
}

}  // namespace
}  // namespace kvmesh::testing
