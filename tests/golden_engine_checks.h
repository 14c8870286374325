// An in-process engine against a reference golden.json (tests/data/hf-*/): prompt log-probs and the
// last position's top 20 (greedy tokens: narrow_weights_golden.h's expect_golden_greedy).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine_fixture.h"
#include "fixture_checks.h"
#include "narrow_weights_golden.h"

namespace kvmesh::testing {

// Every case's prompt log-probs and last top 20 within tol; ids must agree unless two neighbours
// are too close to order reliably.
inline void expect_golden_prompt_logprobs_and_top20(Engine& engine, const nlohmann::json& golden, double tol,
                                          const std::string& where = "") {
  for (const auto& c : golden["cases"]) {
    auto prompt = c["prompt"].get<std::vector<int32_t>>();
    GenerationRequest r = greedy_request(prompt, 1);
    r.prompt_logprobs = 5;
    r.sampling.n_logprobs = 20;
    auto out = generate_blocking(engine, r);
    ASSERT_TRUE(out.is_ok()) << where << out.status().to_string();
    std::vector<double> got;
    for (size_t i = 0; i < out->prompt_logprobs.size(); ++i) {
      EXPECT_EQ(out->prompt_logprobs[i].chosen.token, prompt[i + 1]) << where;
      got.push_back(out->prompt_logprobs[i].chosen.logprob);
    }
    const std::string at = where + " prompt of " + std::to_string(prompt.size());
    expect_fixture_prompt_logprobs(got, c, tol, at);
    const auto top_ids = c["last_top20"]["ids"].get<std::vector<int32_t>>();
    const auto top_lps = c["last_top20"]["logprobs"].get<std::vector<double>>();
    ASSERT_EQ(out->logprobs.size(), 1u) << at;
    const auto& top = out->logprobs[0].top;
    ASSERT_EQ(top.size(), 20u) << at;
    for (size_t i = 0; i < 20; ++i) {
      EXPECT_NEAR(top[i].logprob, top_lps[i], tol) << at << " rank " << i;
      const bool close_to_neighbour = (i > 0 && std::abs(top_lps[i] - top_lps[i - 1]) < 2 * tol) ||
                                      (i + 1 < 20 && std::abs(top_lps[i] - top_lps[i + 1]) < 2 * tol);
      if (!close_to_neighbour) {
        EXPECT_EQ(top[i].token, top_ids[i]) << at << " rank " << i;
      }
    }
  }
}

}  // namespace kvmesh::testing
