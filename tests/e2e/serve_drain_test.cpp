// SIGTERM drains: /ready turns 503 and new generations get 503 while a running stream completes;
// then the process exits 0. Past --drain-timeout the stragglers are cancelled and it still exits 0.
#include <gtest/gtest.h>

#include <thread>

#include "server_process.h"

namespace kvmesh::testing {
namespace {

using nlohmann::json;

TEST(ServeDrain, StreamCompletesReadyTurns503AndExitZero) {
  std::string error;
  auto server = ServerProcess::start({"--model", hf_model_dir(), "--debug-step-delay-ms", "25"}, &error);
  ASSERT_NE(server, nullptr) << error;
  const int port = server->port();
  const json body = {{"prompt", "Tell me"}, {"max_tokens", 60}, {"ignore_eos", true}, {"stream", true},
                     {"return_token_ids", true}};
  auto conn = HttpConnection::connect(port);
  ASSERT_TRUE(conn && conn->send_request("POST", "/v1/completions", body.dump()));
  HttpResponse head;
  ASSERT_TRUE(conn->read_head(&head, 10000)) << head.error;
  ASSERT_TRUE(conn->next_event(10000));
  server->send_signal(SIGTERM);
  ASSERT_TRUE(eventually([&] { return http_request(port, "GET", "/ready").status == 503; }, 5000));
  auto refused = post_json(port, "/v1/completions", json{{"prompt", "late"}, {"max_tokens", 2}}.dump());
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_EQ(http_request(port, "GET", "/health").status, 200) << "still alive while draining";
  int n_tokens = 1;
  std::string finish;
  bool done = false;
  for (int i = 0; i < 200; ++i) {
    auto event = conn->next_event(10000);
    if (!event) break;
    if (*event == "[DONE]") {
      done = true;
      break;
    }
    auto chunk = json::parse(*event);
    n_tokens += static_cast<int>(chunk["choices"][0]["token_ids"].size());
    if (!chunk["choices"][0]["finish_reason"].is_null()) finish = chunk["choices"][0]["finish_reason"];
  }
  EXPECT_TRUE(done);
  EXPECT_EQ(finish, "length");
  EXPECT_EQ(n_tokens, 60);
  auto code = server->wait_exit(15000);
  ASSERT_TRUE(code.has_value()) << "did not exit after draining";
  EXPECT_EQ(*code, 0);
}

TEST(ServeDrain, DrainTimeoutCancelsStragglersAndExitsZero) {
  std::string error;
  auto server = ServerProcess::start(
      {"--model", hf_model_dir(), "--debug-step-delay-ms", "25", "--drain-timeout", "0.5"}, &error);
  ASSERT_NE(server, nullptr) << error;
  const json body = {{"prompt", "Forever"}, {"max_tokens", 400}, {"ignore_eos", true}, {"stream", true}};
  StreamedResult result;
  std::thread client([&] { result = stream_completion(server->port(), "/v1/completions", body); });
  ASSERT_TRUE(eventually([&] { return server->metric("kvmesh_num_requests_running") == 1.0; }, 10000));
  const auto start = std::chrono::steady_clock::now();
  server->send_signal(SIGTERM);
  auto code = server->wait_exit(15000);
  client.join();
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5)) << "400 tokens take 10 s";
  ASSERT_EQ(result.status, 200) << result.error;
  ASSERT_EQ(result.finish_reason.size(), 1u);
  EXPECT_EQ(result.finish_reason[0], "cancelled");
  EXPECT_TRUE(result.done);
}

}  // namespace
}  // namespace kvmesh::testing
