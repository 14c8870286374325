// Every TP x PP layout reproduces the Hugging Face fixture through kvmesh-generate under mpirun:
// prompt and generated log-probs within 1e-4 of transformers and greedy tokens identical to
// transformers' where its margin is clear; beams, seeded samples and bf16 weights' answers
// identical to one process.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "command_runner.h"
#include "engine_fixture.h"
#include "fixture_checks.h"

namespace kvmesh::testing {
namespace {

const std::string kGenerate = KVMESH_BIN_DIR "/tools/kvmesh-generate";

nlohmann::json golden() { return load_json_file(hf_fixture_dir() + "/golden.json"); }

// One request holding every fixture prompt: greedy, 40 tokens, echo with log-probs.
std::string fixture_request() {
  nlohmann::json prompts = nlohmann::json::array();
  const nlohmann::json g = golden();
  for (const auto& c : g["cases"]) prompts.push_back(c["prompt"]);
  nlohmann::json req = {{"prompt", prompts}, {"max_tokens", 40}, {"temperature", 0},
                        {"logprobs", 1},     {"echo", true},     {"return_token_ids", true},
                        {"ignore_eos", true}};
  return req.dump();
}

// Beam search (width 4, as the fixture's beam4) over every fixture prompt at once.
std::string beam_request() {
  nlohmann::json prompts = nlohmann::json::array();
  const nlohmann::json g = golden();
  for (const auto& c : g["cases"]) prompts.push_back(c["prompt"]);
  nlohmann::json req = {{"prompt", prompts},        {"max_tokens", 16},  {"use_beam_search", true},
                        {"n", 4},                   {"best_of", 4},      {"length_penalty", 1.0},
                        {"early_stopping", true},   {"ignore_eos", true}, {"return_token_ids", true}};
  return req.dump();
}

nlohmann::json run_layout(int tp, int pp, const std::string& request = fixture_request(),
                          const std::string& flags = "") {
  const std::string cmd = mpirun_prefix(tp * pp) + kGenerate + " --model " + hf_fixture_dir() +
                          " --threads 1 --tp " + std::to_string(tp) + " --pp " + std::to_string(pp) +
                          " --request " + shell_quote(request) + " " + flags;
  CommandResult r = run_command(cmd, 180);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  if (r.exit_code != 0) return nullptr;
  return nlohmann::json::parse(r.out);
}

class ParallelGolden : public ::testing::TestWithParam<std::pair<int, int>> {};

TEST_P(ParallelGolden, ReproducesTheFixture) {
  const auto [tp, pp] = GetParam();
  const nlohmann::json out = run_layout(tp, pp);
  ASSERT_FALSE(out.is_null());
  const nlohmann::json g = golden();
  const nlohmann::json& cases = g["cases"];
  ASSERT_EQ(out["choices"].size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& choice = out["choices"][i];
    const std::string where = "case " + std::to_string(i);
    expect_fixture_echo_logprobs(choice["logprobs"]["token_logprobs"], cases[i], 1e-4, where);
    expect_fixture_greedy_logprobs(choice["token_ids"].get<std::vector<int32_t>>(),
                                   generated_logprobs(choice["logprobs"]["token_logprobs"], cases[i]["prompt"].size()),
                                   cases[i], 1e-3, 1e-4, where);
  }
}

TEST(ParallelBeamSearch, TwoByTwoGivesTheOneProcessBeams) {
  const nlohmann::json one = run_layout(1, 1, beam_request());
  const nlohmann::json grid = run_layout(2, 2, beam_request());
  ASSERT_FALSE(one.is_null());
  ASSERT_FALSE(grid.is_null());
  const nlohmann::json g = golden();
  ASSERT_EQ(one["choices"].size(), 4 * g["cases"].size());
  ASSERT_EQ(grid["choices"].size(), one["choices"].size());
  for (size_t c = 0; c < one["choices"].size(); ++c) {
    EXPECT_EQ(grid["choices"][c]["token_ids"], one["choices"][c]["token_ids"]) << "choice " << c;
    EXPECT_EQ(one["choices"][c]["token_ids"], g["cases"][c / 4]["beam4"]["sequences"][c % 4]) << "choice " << c;
  }
}

// bf16 weights (--dtype bf16) sharded over 2 x 2 ranks: each rank narrows its own shard, and the
// answer is one process's bf16 answer (tokens identical, log-probs to TP's summation rounding).
TEST(ParallelBf16Weights, TwoByTwoGivesTheOneProcessAnswer) {
  const nlohmann::json one = run_layout(1, 1, fixture_request(), "--dtype bf16");
  const nlohmann::json grid = run_layout(2, 2, fixture_request(), "--dtype bf16");
  ASSERT_FALSE(one.is_null());
  ASSERT_FALSE(grid.is_null());
  ASSERT_EQ(grid["choices"].size(), one["choices"].size());
  for (size_t c = 0; c < one["choices"].size(); ++c) {
    EXPECT_EQ(grid["choices"][c]["token_ids"], one["choices"][c]["token_ids"]) << "choice " << c;
    const auto& lps_one = one["choices"][c]["logprobs"]["token_logprobs"];
    const auto& lps_grid = grid["choices"][c]["logprobs"]["token_logprobs"];
    ASSERT_EQ(lps_grid.size(), lps_one.size()) << "choice " << c;
    for (size_t t = 1; t < lps_one.size(); ++t)  // entry 0: the first prompt token has none
      EXPECT_NEAR(lps_grid[t].get<double>(), lps_one[t].get<double>(), 1e-4) << "choice " << c << " token " << t;
  }
}

// Seeded samples (temperature, top-k, top-p, min-p) with their top log-probs, three per prompt:
// drawn from TP rank 0's gathered logits, they are one process's tokens.
TEST(ParallelSampling, TwoRanksGiveTheOneProcessSamples) {
  nlohmann::json prompts = nlohmann::json::array();
  const nlohmann::json g = golden();
  for (const auto& c : g["cases"]) prompts.push_back(c["prompt"]);
  const std::string req = nlohmann::json{{"prompt", prompts}, {"max_tokens", 12},   {"temperature", 0.9},
                                         {"top_k", 40},       {"top_p", 0.95},      {"min_p", 0.02},
                                         {"n", 3},            {"seed", 1234},       {"logprobs", 3},
                                         {"ignore_eos", true}, {"return_token_ids", true}}
                              .dump();
  const nlohmann::json one = run_layout(1, 1, req);
  const nlohmann::json two = run_layout(2, 1, req);
  ASSERT_FALSE(one.is_null());
  ASSERT_FALSE(two.is_null());
  ASSERT_EQ(one["choices"].size(), 3 * g["cases"].size());
  ASSERT_EQ(two["choices"].size(), one["choices"].size());
  for (size_t c = 0; c < one["choices"].size(); ++c) {
    EXPECT_EQ(two["choices"][c]["token_ids"], one["choices"][c]["token_ids"]) << "choice " << c;
    // TP sums the layers' partial products in another order: log-probs agree to rounding.
    const auto& tops_two = two["choices"][c]["logprobs"]["top_logprobs"];
    const auto& tops_one = one["choices"][c]["logprobs"]["top_logprobs"];
    ASSERT_EQ(tops_two.size(), tops_one.size()) << "choice " << c;
    for (size_t k = 0; k < tops_one.size(); ++k) {
      ASSERT_EQ(tops_two[k].size(), tops_one[k].size()) << "choice " << c << " token " << k;
      for (const auto& [text, logprob] : tops_one[k].items()) {
        ASSERT_TRUE(tops_two[k].contains(text)) << "choice " << c << " token " << k << ": " << text;
        EXPECT_NEAR(tops_two[k][text].get<double>(), logprob.get<double>(), 1e-4) << "choice " << c;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, ParallelGolden,
                         ::testing::Values(std::make_pair(1, 1), std::make_pair(2, 1), std::make_pair(4, 1),
                                           std::make_pair(1, 2), std::make_pair(1, 4), std::make_pair(2, 2)),
                         [](const auto& info) {
                           return "tp" + std::to_string(info.param.first) + "_pp" +
                                  std::to_string(info.param.second);
                         });

}  // namespace
}  // namespace kvmesh::testing
