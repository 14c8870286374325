// The Hugging Face fixture (tests/data/hf-gpt2-4l32d) against an engine whose weights are narrower
// than fp32 (bf16 or f16, on the CPU or on CUDA): prompt log-probs within tol of transformers',
// greedy tokens identical at every step where transformers' margin between the two best tokens
// exceeds clear_margin (after a nearer step the continuations may legitimately part), and each
// generated token's log-prob within tol until then.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine_fixture.h"
#include "fixture_checks.h"

namespace kvmesh::testing {

inline void expect_golden_prompt_logprobs(Engine& engine, const nlohmann::json& golden, double tol) {
  for (const auto& c : golden["cases"]) {
    auto prompt = c["prompt"].get<std::vector<int32_t>>();
    GenerationRequest r = greedy_request(prompt, 1);
    r.prompt_logprobs = 1;
    auto out = generate_blocking(engine, r);
    ASSERT_TRUE(out.is_ok()) << out.status().to_string();
    std::vector<double> got;
    for (size_t i = 0; i < out->prompt_logprobs.size(); ++i) {
      EXPECT_EQ(out->prompt_logprobs[i].chosen.token, prompt[i + 1]);
      got.push_back(out->prompt_logprobs[i].chosen.logprob);
    }
    expect_fixture_prompt_logprobs(got, c, tol);
  }
}

inline void expect_golden_greedy(Engine& engine, const nlohmann::json& golden, double clear_margin, double tol) {
  for (const auto& c : golden["cases"]) {
    auto prompt = c["prompt"].get<std::vector<int32_t>>();
    GenerationRequest r = greedy_request(prompt, static_cast<int32_t>(c["greedy"].size()));
    r.sampling.n_logprobs = 0;
    auto out = generate_blocking(engine, r);
    ASSERT_TRUE(out.is_ok()) << out.status().to_string();
    expect_fixture_greedy_logprobs(out->token_ids, chosen_logprobs(out->logprobs), c, clear_margin, tol);
  }
}

}  // namespace kvmesh::testing
