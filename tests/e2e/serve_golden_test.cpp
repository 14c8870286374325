// kvmesh-serve over real HTTP reproduces Hugging Face's numbers for the 4-layer GPT-2 fixture:
// echo + logprobs give the golden prompt log-probs, greedy completions the golden tokens
// (whole and streamed), and the basic endpoints answer.
#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "fixture_checks.h"
#include "server_process.h"

namespace kvmesh::testing {
namespace {

using nlohmann::json;

json load_golden() {
  std::ifstream in(hf_model_dir() + "/golden.json");
  return json::parse(in);
}

class ServeGolden : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string error;
    server_ = ServerProcess::start({"--model", hf_model_dir()}, &error).release();
    ASSERT_NE(server_, nullptr) << error;
    golden_ = new json(load_golden());
  }
  static void TearDownTestSuite() {
    delete server_;
    delete golden_;
  }
  static ServerProcess* server_;
  static json* golden_;
};
ServerProcess* ServeGolden::server_ = nullptr;
json* ServeGolden::golden_ = nullptr;

TEST_F(ServeGolden, EchoLogprobsReproducePromptLogprobs) {
  for (const auto& c : (*golden_)["cases"]) {
    const auto prompt = c["prompt"].get<std::vector<int>>();
    json body = {{"prompt", prompt}, {"max_tokens", 1}, {"echo", true}, {"logprobs", 1}, {"temperature", 0}};
    auto [status, reply] = post_for_json(server_->port(), "/v1/completions", body);
    ASSERT_EQ(status, 200) << reply.dump();
    const json& lp = reply["choices"][0]["logprobs"];
    ASSERT_EQ(lp["token_logprobs"].size(), prompt.size() + 1) << "prompt tokens then the generated one";
    expect_fixture_echo_logprobs(lp["token_logprobs"], c, 1e-4);
  }
}

// The golden greedy tokens wherever Hugging Face's own margin is clear (fixture_checks.h).
void expect_golden_tokens(const json& c, const std::vector<int>& got) { expect_fixture_greedy(got, c, 1e-3); }

TEST_F(ServeGolden, GreedyCompletionsReproduceGoldenTokens) {
  for (const auto& c : (*golden_)["cases"]) {
    const auto prompt = c["prompt"].get<std::vector<int>>();
    json body = {{"prompt", prompt}, {"max_tokens", c["greedy"].size()}, {"temperature", 0},
                 {"ignore_eos", true}, {"return_token_ids", true}};
    auto [status, reply] = post_for_json(server_->port(), "/v1/completions", body);
    ASSERT_EQ(status, 200) << reply.dump();
    const json& choice = reply["choices"][0];
    EXPECT_EQ(choice["finish_reason"], "length");
    EXPECT_EQ(choice["prompt_token_ids"].get<std::vector<int>>(), prompt);
    expect_golden_tokens(c, choice["token_ids"].get<std::vector<int>>());
    EXPECT_EQ(reply["usage"]["completion_tokens"], c["greedy"].size());
  }
}

TEST_F(ServeGolden, StreamedGreedyMatchesGoldenTokens) {
  for (const auto& c : (*golden_)["cases"]) {
    json body = {{"prompt", c["prompt"]}, {"max_tokens", c["greedy"].size()}, {"temperature", 0},
                 {"ignore_eos", true}, {"return_token_ids", true}, {"stream", true},
                 {"stream_options", {{"include_usage", true}}}};
    StreamedResult r = stream_completion(server_->port(), "/v1/completions", body);
    ASSERT_EQ(r.status, 200) << r.error;
    ASSERT_TRUE(r.done) << "no [DONE]";
    ASSERT_EQ(r.token_ids.size(), 1u);
    expect_golden_tokens(c, r.token_ids[0]);
    EXPECT_EQ(r.finish_reason[0], "length");
    ASSERT_TRUE(r.usage.is_object());
    EXPECT_EQ(r.usage["completion_tokens"], c["greedy"].size());
  }
}

TEST_F(ServeGolden, SmallEndpointsAnswer) {
  const int port = server_->port();
  EXPECT_EQ(http_request(port, "GET", "/health").status, 200);
  EXPECT_EQ(http_request(port, "GET", "/ready").status, 200);
  auto models = json::parse(http_request(port, "GET", "/v1/models").body);
  EXPECT_EQ(models["data"][0]["id"], "hf-gpt2-4l32d");
  EXPECT_EQ(models["data"][0]["max_model_len"], 512);
  auto [st, tok] = post_for_json(port, "/tokenize", json{{"prompt", "Hello world"}});
  ASSERT_EQ(st, 200);
  EXPECT_EQ(tok["tokens"], json({15496, 995}));
  auto [st2, detok] = post_for_json(port, "/detokenize", json{{"tokens", {15496, 995}}});
  ASSERT_EQ(st2, 200);
  EXPECT_EQ(detok["prompt"], "Hello world");
  auto [st3, chat] = post_for_json(port, "/v1/chat/completions",
                                   json{{"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"max_tokens", 3}});
  ASSERT_EQ(st3, 200) << chat.dump();
  EXPECT_EQ(chat["object"], "chat.completion");
  EXPECT_EQ(chat["choices"][0]["message"]["role"], "assistant");
  const std::string metrics = server_->metrics();
  EXPECT_NE(metrics.find("# TYPE kvmesh_time_to_first_token_seconds histogram"), std::string::npos);
  EXPECT_GT(metric_value(metrics, "kvmesh_generation_tokens_total"), 0.0);
  // Gauges are published after each engine step, a moment after the reply may have gone out.
  EXPECT_TRUE(eventually([&] { return server_->metric("kvmesh_kv_pages_used") == 0.0; }, 5000));
}

// logit_bias: +100 makes a token the greedy choice, -100 bans one; the log-prob reported for the
// forced token is the model's own (the prompt log-prob of the same token after the same prompt).
TEST_F(ServeGolden, LogitBiasForcesAndBansTokens) {
  const json& c = (*golden_)["cases"][0];
  auto prompt = c["prompt"].get<std::vector<int>>();
  const int golden_first = c["greedy"][0].get<int>();
  const int forced = golden_first == 13 ? 11 : 13;
  json biased = {{"prompt", prompt}, {"max_tokens", 4}, {"temperature", 0}, {"ignore_eos", true},
                 {"return_token_ids", true}, {"logprobs", 0},
                 {"logit_bias", {{std::to_string(forced), 100}}}};
  auto [status, reply] = post_for_json(server_->port(), "/v1/completions", biased);
  ASSERT_EQ(status, 200) << reply.dump();
  EXPECT_EQ(reply["choices"][0]["token_ids"], json({forced, forced, forced, forced}));

  std::vector<int> with_forced = prompt;
  with_forced.push_back(forced);
  json echo = {{"prompt", with_forced}, {"max_tokens", 1}, {"echo", true}, {"logprobs", 0}, {"temperature", 0}};
  auto [echo_status, echoed] = post_for_json(server_->port(), "/v1/completions", echo);
  ASSERT_EQ(echo_status, 200) << echoed.dump();
  const double model_logprob = echoed["choices"][0]["logprobs"]["token_logprobs"][prompt.size()].get<double>();
  EXPECT_NEAR(reply["choices"][0]["logprobs"]["token_logprobs"][0].get<double>(), model_logprob, 1e-4);

  json banned = {{"prompt", prompt}, {"max_tokens", 1}, {"temperature", 0}, {"return_token_ids", true},
                 {"logit_bias", {{std::to_string(golden_first), -100}}}};
  auto [ban_status, ban_reply] = post_for_json(server_->port(), "/v1/completions", banned);
  ASSERT_EQ(ban_status, 200) << ban_reply.dump();
  EXPECT_NE(ban_reply["choices"][0]["token_ids"][0].get<int>(), golden_first);
}

TEST_F(ServeGolden, NGivesDistinctSeededSamples) {
  json body = {{"prompt", {"The cat", "A dog"}}, {"n", 3}, {"max_tokens", 8}, {"temperature", 1.0},
               {"seed", 7}, {"return_token_ids", true}, {"ignore_eos", true}};
  auto [status, reply] = post_for_json(server_->port(), "/v1/completions", body);
  ASSERT_EQ(status, 200) << reply.dump();
  ASSERT_EQ(reply["choices"].size(), 6u);
  for (int p = 0; p < 2; ++p) {
    std::set<std::vector<int>> distinct;
    for (int i = 0; i < 3; ++i) {
      const json& choice = reply["choices"][p * 3 + i];
      EXPECT_EQ(choice["index"], p * 3 + i);
      distinct.insert(choice["token_ids"].get<std::vector<int>>());
    }
    EXPECT_EQ(distinct.size(), 3u) << "the n samples of prompt " << p << " must differ";
  }
  auto [status2, again] = post_for_json(server_->port(), "/v1/completions", body);
  ASSERT_EQ(status2, 200);
  for (int c = 0; c < 6; ++c) EXPECT_EQ(again["choices"][c]["token_ids"], reply["choices"][c]["token_ids"]);
}

TEST_F(ServeGolden, BeamSearchReturnsTheFixtureBeams) {
  const int port = server_->port();
  for (const auto& c : (*golden_)["cases"]) {
    json body = {{"prompt", c["prompt"]}, {"use_beam_search", true}, {"n", 4},      {"best_of", 4},
                 {"max_tokens", 16},      {"length_penalty", 1.0},   {"early_stopping", true},
                 {"ignore_eos", true},    {"return_token_ids", true}};
    auto [status, reply] = post_for_json(port, "/v1/completions", body);
    ASSERT_EQ(status, 200) << reply.dump();
    const auto& beams = c["beam4"]["sequences"];
    ASSERT_EQ(reply["choices"].size(), beams.size());
    for (size_t i = 0; i < beams.size(); ++i) {
      EXPECT_EQ(reply["choices"][i]["index"], i);
      EXPECT_EQ(reply["choices"][i]["token_ids"], beams[i]) << "beam " << i;
      EXPECT_EQ(reply["choices"][i]["finish_reason"], "length");
    }
    EXPECT_EQ(reply["usage"]["completion_tokens"], 4 * 16);
  }
  // Two of the four beams, best first.
  json two = {{"prompt", (*golden_)["cases"][1]["prompt"]}, {"use_beam_search", true}, {"n", 2}, {"best_of", 4},
              {"max_tokens", 16}, {"early_stopping", true}, {"ignore_eos", true}, {"return_token_ids", true}};
  auto [st2, reply2] = post_for_json(port, "/v1/completions", two);
  ASSERT_EQ(st2, 200) << reply2.dump();
  ASSERT_EQ(reply2["choices"].size(), 2u);
  for (size_t i = 0; i < 2; ++i)
    EXPECT_EQ(reply2["choices"][i]["token_ids"], (*golden_)["cases"][1]["beam4"]["sequences"][i]);
  // Not streamed, as vLLM.
  json streamed = two;
  streamed["stream"] = true;
  auto [st3, error] = post_for_json(port, "/v1/completions", streamed);
  EXPECT_EQ(st3, 400);
  EXPECT_EQ(error["error"]["param"], "stream");
  EXPECT_TRUE(eventually([&] { return server_->metric("kvmesh_kv_pages_used") == 0.0; }, 5000));
  EXPECT_GT(server_->metric("kvmesh_kv_cow_copies_total"), 0.0);  // beams copied shared partial pages
  EXPECT_EQ(server_->metric("kvmesh_kv_shared_pages"), 0.0);
}

TEST_F(ServeGolden, StreamedSamplesCarryTheirIndexAndMatchTheWholeReply) {
  json body = {{"prompt", "The cat"}, {"n", 3}, {"max_tokens", 8}, {"temperature", 1.0},
               {"seed", 11}, {"return_token_ids", true}, {"ignore_eos", true}};
  auto [status, whole] = post_for_json(server_->port(), "/v1/completions", body);
  ASSERT_EQ(status, 200) << whole.dump();
  body["stream"] = true;
  StreamedResult r = stream_completion(server_->port(), "/v1/completions", body);
  ASSERT_EQ(r.status, 200) << r.error;
  ASSERT_TRUE(r.done);
  ASSERT_EQ(r.token_ids.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(json(r.token_ids[i]), whole["choices"][i]["token_ids"]) << "choice " << i;
    EXPECT_EQ(r.text[i], whole["choices"][i]["text"]) << "choice " << i;
    EXPECT_EQ(r.finish_reason[i], "length");
  }
}

TEST_F(ServeGolden, BestOfGivesTheMostLikelyOfItsSamples) {
  // best_of = 4, n = 1 picks the sample with the highest cumulative log-prob among the four that
  // n = 4 with the same seed returns.
  json four = {{"prompt", "A dog"}, {"n", 4}, {"max_tokens", 6}, {"temperature", 1.0}, {"seed", 5},
               {"logprobs", 0}, {"return_token_ids", true}, {"ignore_eos", true}};
  auto [st, all] = post_for_json(server_->port(), "/v1/completions", four);
  ASSERT_EQ(st, 200) << all.dump();
  double best = -1e30;
  json best_tokens;
  for (const auto& c : all["choices"]) {
    double sum = 0;
    for (const auto& lp : c["logprobs"]["token_logprobs"]) sum += lp.get<double>();
    if (sum > best) best = sum, best_tokens = c["token_ids"];
  }
  json one = four;
  one["n"] = 1;
  one["best_of"] = 4;
  one.erase("logprobs");
  auto [st2, picked] = post_for_json(server_->port(), "/v1/completions", one);
  ASSERT_EQ(st2, 200) << picked.dump();
  ASSERT_EQ(picked["choices"].size(), 1u);
  EXPECT_EQ(picked["choices"][0]["token_ids"], best_tokens);
  EXPECT_TRUE(picked["choices"][0]["logprobs"].is_null());
}

}  // namespace
}  // namespace kvmesh::testing
