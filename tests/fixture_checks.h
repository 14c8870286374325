// Checks against the Hugging Face fixture's golden values (tests/data/hf-gpt2-4l32d/golden.json),
// shared by every suite that reproduces it (CPU, HTTP, MPI, CUDA, NCCL).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kvmesh::testing {

// got[j]: the log-prob of prompt token j + 1; each within tol of transformers'.
inline void expect_fixture_prompt_logprobs(const std::vector<double>& got, const nlohmann::json& c, double tol,
                                           const std::string& where = "") {
  const auto expected = c["prompt_logprob_of_next"].get<std::vector<double>>();
  ASSERT_EQ(got.size(), expected.size()) << where;
  for (size_t j = 0; j < expected.size(); ++j)
    EXPECT_NEAR(got[j], expected[j], tol) << where << " prompt position " << j + 1;
}

// An echoed completion's "token_logprobs" (null for the first prompt token, then one per prompt
// token and the generated ones): the prompt's entries within tol of transformers'.
inline void expect_fixture_echo_logprobs(const nlohmann::json& token_logprobs, const nlohmann::json& c, double tol,
                                         const std::string& where = "") {
  const size_t n = c["prompt_logprob_of_next"].size();
  ASSERT_GT(token_logprobs.size(), n) << where << ": the prompt's log-probs, then the generated ones";
  EXPECT_TRUE(token_logprobs[0].is_null()) << where;
  std::vector<double> got;
  for (size_t j = 1; j <= n; ++j) got.push_back(token_logprobs[j].get<double>());
  expect_fixture_prompt_logprobs(got, c, tol, where);
}

// The fixture's greedy tokens, step by step, until the first step that differs, which is allowed
// only where transformers' own top-1/top-2 margin is at most clear_margin: after such a near tie
// the two continuations legitimately part.
inline void expect_fixture_greedy(const std::vector<int32_t>& got, const nlohmann::json& c, double clear_margin,
                                  const std::string& where = "") {
  const auto greedy = c["greedy"].get<std::vector<int32_t>>();
  const auto margins = c["greedy_margins"].get<std::vector<double>>();
  ASSERT_EQ(got.size(), greedy.size()) << where;
  for (size_t i = 0; i < greedy.size(); ++i) {
    if (got[i] == greedy[i]) continue;
    EXPECT_LE(margins[i], clear_margin) << where << " step " << i << " differs where transformers' margin is "
                                        << margins[i];
    return;
  }
}

// expect_fixture_greedy, and besides: the log-prob of each generated token (logprobs[i], step i)
// within tol of transformers' top-1 log-prob at that step, for every step up to the first that
// differs. This fixture's random model mostly repeats one token, which a wrong decode step often
// repeats too; its log-probs show the error.
inline void expect_fixture_greedy_logprobs(const std::vector<int32_t>& got, const std::vector<double>& logprobs,
                                           const nlohmann::json& c, double clear_margin, double tol,
                                           const std::string& where = "") {
  const auto greedy = c["greedy"].get<std::vector<int32_t>>();
  const auto margins = c["greedy_margins"].get<std::vector<double>>();
  const nlohmann::json& steps = c["greedy_step_top5"];
  ASSERT_EQ(got.size(), greedy.size()) << where;
  ASSERT_EQ(logprobs.size(), greedy.size()) << where << ": one log-prob per generated token";
  ASSERT_EQ(steps.size(), greedy.size()) << where;
  for (size_t i = 0; i < greedy.size(); ++i) {
    if (got[i] != greedy[i]) {
      EXPECT_LE(margins[i], clear_margin) << where << " step " << i << " differs where transformers' margin is "
                                          << margins[i];
      return;
    }
    EXPECT_NEAR(logprobs[i], steps[i]["logprobs"][0].get<double>(), tol) << where << " step " << i;
  }
}

// The log-probs of the generated tokens in an echoed completion's "token_logprobs" (after the
// prompt's entries).
inline std::vector<double> generated_logprobs(const nlohmann::json& token_logprobs, size_t prompt_tokens) {
  std::vector<double> out;
  for (size_t j = prompt_tokens; j < token_logprobs.size(); ++j) out.push_back(token_logprobs[j].get<double>());
  return out;
}

}  // namespace kvmesh::testing
