// Logit edits through a whole engine on the Hugging Face fixture (tests/data/hf-gpt2-4l32d), for
// any backend: a +100 logit bias forces its token at every step while the reported log-prob stays
// the model's own, a stop token is banned before min_tokens, and a large frequency penalty keeps a
// greedy run from repeating any token (which the fixture's plain greedy runs do).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine_fixture.h"

namespace kvmesh::testing {

// same_tol: how far two computations of one log-prob on this engine may part (another batch shape);
// the first max_cases of the fixture's cases.
inline void expect_logit_edits_take_effect(Engine& engine, const nlohmann::json& golden, double same_tol,
                                           size_t max_cases = SIZE_MAX) {
  bool some_greedy_run_repeats = false;
  const size_t n_cases = std::min(max_cases, golden["cases"].size());
  for (size_t k = 0; k < n_cases; ++k) {
    const auto& c = golden["cases"][k];
    const auto prompt = c["prompt"].get<std::vector<int32_t>>();
    const auto greedy = c["greedy"].get<std::vector<int32_t>>();
    const int32_t first = greedy[0];
    const int32_t forced = first == 13 ? 11 : 13;

    GenerationRequest biased = greedy_request(prompt, 4);
    biased.sampling.logit_bias = {{forced, 100.0f}};
    biased.sampling.n_logprobs = 0;
    auto out = generate_blocking(engine, biased);
    ASSERT_TRUE(out.is_ok()) << out.status().to_string();
    EXPECT_EQ(out->token_ids, std::vector<int32_t>(4, forced));
    std::vector<int32_t> with_forced = prompt;
    with_forced.push_back(forced);
    GenerationRequest echo = greedy_request(with_forced, 1);
    echo.prompt_logprobs = 0;
    auto model = generate_blocking(engine, echo);
    ASSERT_TRUE(model.is_ok()) << model.status().to_string();
    ASSERT_FALSE(out->logprobs.empty());
    EXPECT_NEAR(out->logprobs[0].chosen.logprob, model->prompt_logprobs.back().chosen.logprob, same_tol);

    GenerationRequest banned = greedy_request(prompt, 2);
    banned.ignore_eos = false;
    banned.stop_token_ids = {first};
    banned.min_tokens = 2;
    out = generate_blocking(engine, banned);
    ASSERT_TRUE(out.is_ok()) << out.status().to_string();
    ASSERT_EQ(out->token_ids.size(), 2u);
    EXPECT_NE(out->token_ids[0], first);

    GenerationRequest penalised = greedy_request(prompt, 12);
    penalised.sampling.frequency_penalty = 100.0f;
    out = generate_blocking(engine, penalised);
    ASSERT_TRUE(out.is_ok()) << out.status().to_string();
    EXPECT_EQ(std::set<int32_t>(out->token_ids.begin(), out->token_ids.end()).size(), out->token_ids.size());
    const size_t n = std::min<size_t>(12, greedy.size());
    some_greedy_run_repeats |= std::set<int32_t>(greedy.begin(), greedy.begin() + n).size() < n;
  }
  EXPECT_TRUE(some_greedy_run_repeats) << "the penalty check needs a fixture run that repeats a token";
}

}  // namespace kvmesh::testing
