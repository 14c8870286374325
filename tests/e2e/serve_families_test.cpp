// kvmesh-serve over real HTTP serves the OPT and GPT-Neo references: echoed log-probs and greedy
// tokens as the references give them, and OPT's BOS before a text prompt (/tokenize shows it).
#include <gtest/gtest.h>

#include <fstream>

#include "fixture_checks.h"
#include "server_process.h"

namespace kvmesh::testing {
namespace {

using nlohmann::json;

class ServeFamilies : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    dir_ = std::string(KVMESH_TEST_DATA_DIR) + "/" + GetParam();
    std::ifstream in(dir_ + "/golden.json");
    golden_ = json::parse(in);
    std::string error;
    server_ = ServerProcess::start({"--model", dir_}, &error);
    ASSERT_NE(server_, nullptr) << error;
  }
  std::string dir_;
  json golden_;
  std::unique_ptr<ServerProcess> server_;
};

TEST_P(ServeFamilies, EchoedLogprobsAndGreedyTokens) {
  for (const auto& c : golden_["cases"]) {
    const auto prompt = c["prompt"].get<std::vector<int>>();
    json body = {{"prompt", prompt}, {"max_tokens", c["greedy"].size()}, {"echo", true}, {"logprobs", 1},
                 {"temperature", 0}, {"ignore_eos", true}, {"return_token_ids", true}};
    auto [status, reply] = post_for_json(server_->port(), "/v1/completions", body);
    ASSERT_EQ(status, 200) << reply.dump();
    const json& choice = reply["choices"][0];
    expect_fixture_echo_logprobs(choice["logprobs"]["token_logprobs"], c, 1e-4, GetParam());
    expect_fixture_greedy(choice["token_ids"].get<std::vector<int32_t>>(), c, 1e-3, GetParam());
  }
}

TEST_P(ServeFamilies, TokenizeShowsThePromptAsTheModelSeesIt) {
  auto [status, tok] = post_for_json(server_->port(), "/tokenize", json{{"prompt", "Hello world"}});
  ASSERT_EQ(status, 200) << tok.dump();
  const bool opt = std::string(GetParam()).find("opt") != std::string::npos;
  EXPECT_EQ(tok["tokens"], opt ? json({2, 15496, 995}) : json({15496, 995}));  // OPT: </s> first
}

INSTANTIATE_TEST_SUITE_P(Families, ServeFamilies, ::testing::Values("hf-opt-3l32d", "hf-gptneo-4l32d"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           return std::string(info.param[3] == 'o' ? "opt" : "gptneo");
                         });

}  // namespace
}  // namespace kvmesh::testing
