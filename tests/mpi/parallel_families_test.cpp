// Every TP x PP layout reproduces the OPT and GPT-Neo references (tests/data/hf-opt-3l32d,
// hf-gptneo-4l32d) through kvmesh-generate under mpirun: prompt and generated log-probs within 1e-4
// and greedy tokens identical where the reference's margin is clear.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "command_runner.h"
#include "engine_fixture.h"
#include "fixture_checks.h"

namespace kvmesh::testing {
namespace {

const std::string kGenerate = KVMESH_BIN_DIR "/tools/kvmesh-generate";

struct Layout {
  const char* dir;
  int tp, pp;
};

std::string model_dir(const Layout& l) { return std::string(KVMESH_TEST_DATA_DIR) + "/" + l.dir; }

class ParallelFamilies : public ::testing::TestWithParam<Layout> {};

TEST_P(ParallelFamilies, ReproducesTheReference) {
  const Layout l = GetParam();
  const nlohmann::json g = load_json_file(model_dir(l) + "/golden.json");
  nlohmann::json prompts = nlohmann::json::array();
  for (const auto& c : g["cases"]) prompts.push_back(c["prompt"]);
  const nlohmann::json req = {{"prompt", prompts}, {"max_tokens", g["cases"][0]["greedy"].size()},
                              {"temperature", 0},  {"logprobs", 1},
                              {"echo", true},      {"return_token_ids", true},
                              {"ignore_eos", true}};
  const std::string cmd = mpirun_prefix(l.tp * l.pp) + kGenerate + " --model " + model_dir(l) +
                          " --threads 1 --block-size 4 --tp " + std::to_string(l.tp) + " --pp " +
                          std::to_string(l.pp) + " --request " + shell_quote(req.dump());
  CommandResult r = run_command(cmd, 180);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json out = nlohmann::json::parse(r.out);
  const nlohmann::json& cases = g["cases"];
  ASSERT_EQ(out["choices"].size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& choice = out["choices"][i];
    const std::string where = std::string(l.dir) + " case " + std::to_string(i);
    expect_fixture_echo_logprobs(choice["logprobs"]["token_logprobs"], cases[i], 1e-4, where);
    expect_fixture_greedy_logprobs(choice["token_ids"].get<std::vector<int32_t>>(),
                                   generated_logprobs(choice["logprobs"]["token_logprobs"], cases[i]["prompt"].size()),
                                   cases[i], 1e-3, 1e-4, where);
  }
}

std::string layout_name(const ::testing::TestParamInfo<Layout>& info) {
  std::string s = std::string(info.param.dir) + "_" + std::to_string(info.param.tp) + "x" + std::to_string(info.param.pp);
  for (char& ch : s)
    if (ch == '-') ch = '_';
  return s;
}

INSTANTIATE_TEST_SUITE_P(Layouts, ParallelFamilies,
                         ::testing::Values(Layout{"hf-opt-3l32d", 2, 1}, Layout{"hf-opt-3l32d", 1, 2},
                                           Layout{"hf-opt-3l32d", 2, 2}, Layout{"hf-gptneo-4l32d", 2, 1},
                                           Layout{"hf-gptneo-4l32d", 1, 2}, Layout{"hf-gptneo-4l32d", 2, 2},
                                           Layout{"hf-opt-untied-2l32d", 2, 2}),
                         layout_name);

}  // namespace
}  // namespace kvmesh::testing
