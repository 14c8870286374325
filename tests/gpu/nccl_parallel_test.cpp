// TP and PP over NCCL: kvmesh-generate --device cuda under mpirun (one GPU per rank) reproduces the
// Hugging Face fixture within the bf16 tolerances of cuda_hf_golden_test (prompt log-probs within
// 0.1, greedy tokens identical where HF's margin exceeds 0.1). NCCL cannot run two ranks on one
// GPU, so each layout runs only when the machine has tp * pp GPUs and mpirun, and skips with a
// message otherwise. Each layout runs with decode graphs (NCCL calls recorded in them) and with
// --enforce-eager. $KVMESH_GENERATE names the kvmesh-generate to start (default: this build's).
#include <gtest/gtest.h>

#include <cstdlib>

#include <nlohmann/json.hpp>

#include "command_runner.h"
#include "engine_fixture.h"
#include "fixture_checks.h"
#include "worker/cuda/cuda_backend.h"

namespace kvmesh::testing {
namespace {

std::string generate_program() {
  const char* named = std::getenv("KVMESH_GENERATE");
  return named != nullptr && *named != '\0' ? named : KVMESH_BIN_DIR "/tools/kvmesh-generate";
}
constexpr double kLogprobTolerance = 0.1;
constexpr double kClearMargin = 0.1;

std::string fixture_request(const nlohmann::json& g) {
  nlohmann::json prompts = nlohmann::json::array();
  for (const auto& c : g["cases"]) prompts.push_back(c["prompt"]);
  nlohmann::json req = {{"prompt", prompts}, {"max_tokens", 40}, {"temperature", 0},
                        {"logprobs", 1},     {"echo", true},     {"return_token_ids", true},
                        {"ignore_eos", true}};
  return req.dump();
}

struct NcclLayout {
  int tp = 1, pp = 1;
  bool eager = false;
};

class NcclParallel : public ::testing::TestWithParam<NcclLayout> {};

TEST_P(NcclParallel, ReproducesTheFixture) {
  const auto [tp, pp, eager] = GetParam();
  const int gpus = cuda_device_count();
  if (gpus < tp * pp)
    GTEST_SKIP() << "TP " << tp << " x PP " << pp << " over NCCL needs " << tp * pp << " GPUs; "
                 << gpus << " visible";
  if (std::system("command -v mpirun >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "TP " << tp << " x PP " << pp << " over NCCL starts its ranks with mpirun, which is not on PATH";
  const nlohmann::json g = load_json_file(hf_fixture_dir() + "/golden.json");
  const std::string cmd = mpirun_prefix(tp * pp) + generate_program() + " --model " + hf_fixture_dir() +
                          " --device cuda --tp " + std::to_string(tp) + " --pp " + std::to_string(pp) +
                          (eager ? " --enforce-eager" : "") +
                          " --request " + shell_quote(fixture_request(g));
  CommandResult r = run_command(cmd, 90);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json out = nlohmann::json::parse(r.out);
  const nlohmann::json& cases = g["cases"];
  ASSERT_EQ(out["choices"].size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& choice = out["choices"][i];
    const std::string where = "case " + std::to_string(i);
    expect_fixture_echo_logprobs(choice["logprobs"]["token_logprobs"], cases[i], kLogprobTolerance, where);
    expect_fixture_greedy(choice["token_ids"].get<std::vector<int32_t>>(), cases[i], kClearMargin, where);
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, NcclParallel,
                         ::testing::Values(NcclLayout{2, 1, false}, NcclLayout{1, 2, false},
                                           NcclLayout{2, 2, false}, NcclLayout{2, 1, true},
                                           NcclLayout{2, 2, true}),
                         [](const auto& info) {
                           return "tp" + std::to_string(info.param.tp) + "_pp" + std::to_string(info.param.pp) +
                                  (info.param.eager ? "_eager" : "_graphs");
                         });

}  // namespace
}  // namespace kvmesh::testing
