// Operations: --api-key guards everything but /health, /ready and /metrics (and never reaches the log),
// --max-queue turns excess requests into 429 with Retry-After while the admitted ones finish,
// and every request leaves one JSON log line on stderr.
#include <gtest/gtest.h>

#include <sstream>

#include "server_process.h"

namespace kvmesh::testing {
namespace {

using nlohmann::json;

const std::string kKey = "sk-test-3f9a1c";
const Headers kAuth = {{"Authorization", "Bearer " + kKey}};

TEST(ServeLimits, ApiKeyGuardsAllButHealthReadyAndMetrics) {
  std::string error;
  auto server = ServerProcess::start({"--model", hf_model_dir(), "--api-key", kKey}, &error);
  ASSERT_NE(server, nullptr) << error;
  const int port = server->port();
  EXPECT_EQ(http_request(port, "GET", "/health").status, 200);
  EXPECT_EQ(http_request(port, "GET", "/ready").status, 200);
  EXPECT_EQ(http_request(port, "GET", "/metrics").status, 200);  // scraped without the key, as vLLM's
  for (const char* path : {"/v1/models"}) {
    auto res = http_request(port, "GET", path);
    EXPECT_EQ(res.status, 401) << path;
    EXPECT_EQ(json::parse(res.body)["error"]["code"], "invalid_api_key");
    EXPECT_EQ(http_request(port, "GET", path, "", {{"Authorization", "Bearer " + kKey + "x"}}).status, 401);
    EXPECT_EQ(http_request(port, "GET", path, "", {{"Authorization", "Basic " + kKey}}).status, 401);
    EXPECT_EQ(http_request(port, "GET", path, "", kAuth).status, 200) << path;
  }
  const json body = {{"prompt", "secret prompt text"}, {"max_tokens", 2}};
  EXPECT_EQ(post_json(port, "/v1/completions", body.dump()).status, 401);
  EXPECT_EQ(post_json(port, "/v1/completions", body.dump(), kAuth).status, 200);
  EXPECT_EQ(post_json(port, "/tokenize", json{{"prompt", "x"}}.dump()).status, 401);
  const std::string log = server->stderr_text();
  EXPECT_EQ(log.find(kKey), std::string::npos) << "the key never reaches the log";
  EXPECT_EQ(log.find("secret prompt"), std::string::npos) << "nor the prompt";
}

TEST(ServeLimits, MetricsRequireKeyProtectsMetrics) {
  std::string error;
  auto server = ServerProcess::start({"--model", hf_model_dir(), "--api-key", kKey, "--metrics-require-key"}, &error);
  ASSERT_NE(server, nullptr) << error;
  const int port = server->port();
  EXPECT_EQ(http_request(port, "GET", "/metrics").status, 401);
  EXPECT_EQ(http_request(port, "GET", "/metrics", "", kAuth).status, 200);
  EXPECT_EQ(http_request(port, "GET", "/health").status, 200);
}

TEST(ServeLimits, FullQueueGets429WithRetryAfter) {
  std::string error;
  auto server = ServerProcess::start({"--model", hf_model_dir(), "--max-num-seqs", "1", "--max-queue", "2",
                                      "--debug-step-delay-ms", "30"},
                                     &error);
  ASSERT_NE(server, nullptr) << error;
  const int port = server->port();
  const json long_body = {{"prompt", "running"}, {"max_tokens", 300}, {"ignore_eos", true}, {"stream", true}};
  auto running = HttpConnection::connect(port);
  ASSERT_TRUE(running && running->send_request("POST", "/v1/completions", long_body.dump()));
  HttpResponse head;
  ASSERT_TRUE(running->read_head(&head, 10000) && running->next_event(10000));
  ASSERT_TRUE(eventually([&] { return server->metric("kvmesh_num_requests_waiting") == 0.0; }, 10000));
  // Two short requests wait behind it; a third does not fit.
  std::vector<std::unique_ptr<HttpConnection>> queued;
  const json short_body = {{"prompt", "queued"}, {"max_tokens", 3}, {"temperature", 0}};
  for (int i = 0; i < 2; ++i) {
    queued.push_back(HttpConnection::connect(port));
    ASSERT_TRUE(queued.back()->send_request("POST", "/v1/completions", short_body.dump()));
  }
  ASSERT_TRUE(eventually([&] { return server->metric("kvmesh_num_requests_waiting") == 2.0; }, 10000))
      << server->metrics() << server->stderr_text();
  auto refused = post_json(port, "/v1/completions", short_body.dump());
  EXPECT_EQ(refused.status, 429) << refused.body;
  EXPECT_EQ(refused.header("retry-after"), "1");
  EXPECT_EQ(json::parse(refused.body)["error"]["type"], "rate_limit_error");
  // Two prompts count as two sequences (n = 2 could never run here: one step holds one sequence).
  EXPECT_EQ(post_json(port, "/v1/completions", json{{"prompt", {"x", "y"}}, {"max_tokens", 3}}.dump()).status, 429);
  EXPECT_EQ(post_json(port, "/v1/completions", json{{"prompt", "x"}, {"n", 2}}.dump()).status, 400);
  running->close();  // the queued ones run and finish
  for (auto& conn : queued) {
    HttpResponse res;
    ASSERT_TRUE(conn->read_head(&res, 20000)) << res.error;
    ASSERT_TRUE(conn->read_body(&res.body, 20000));
    EXPECT_EQ(res.status, 200) << res.body;
  }
  EXPECT_EQ(post_json(port, "/v1/completions", short_body.dump()).status, 200);
  const std::string metrics = server->metrics();
  EXPECT_NE(metrics.find("kvmesh_http_requests_total{code=\"429\"} 2"), std::string::npos) << metrics;
}

// A request that alone holds more sequences than --max-queue could never be queued: a 400 naming
// the limit, not a 429 that a retrying client would loop on.
TEST(ServeLimits, RequestLargerThanTheQueueGets400) {
  std::string error;
  auto server = ServerProcess::start({"--model", hf_model_dir(), "--max-queue", "2"}, &error);
  ASSERT_NE(server, nullptr) << error;
  const int port = server->port();
  const json cases[] = {
      {{"prompt", {"a", "b", "c"}}, {"max_tokens", 2}},
      {{"prompt", "a"}, {"n", 3}, {"max_tokens", 2}},
      {{"prompt", {"a", "b"}}, {"n", 2}, {"max_tokens", 2}},
  };
  for (const json& body : cases) {
    auto res = post_json(port, "/v1/completions", body.dump());
    EXPECT_EQ(res.status, 400) << body << res.body;
    EXPECT_TRUE(res.header("retry-after").empty()) << body;
    const json reply = json::parse(res.body, nullptr, false);
    ASSERT_TRUE(reply.is_object()) << res.body;
    EXPECT_EQ(reply["error"]["param"], body["prompt"].is_array() ? "prompt" : "n") << body;
    EXPECT_NE(reply["error"]["message"].get<std::string>().find("--max-queue"), std::string::npos) << res.body;
  }
  EXPECT_EQ(post_json(port, "/v1/completions", json{{"prompt", {"a", "b"}}, {"max_tokens", 2}}.dump()).status, 200);
}

TEST(ServeLimits, OneJsonLogLinePerRequest) {
  std::string error;
  auto server = ServerProcess::start({"--model", hf_model_dir()}, &error);
  ASSERT_NE(server, nullptr) << error;
  const int port = server->port();
  auto [status, reply] = post_for_json(port, "/v1/completions", json{{"prompt", "Hello there"}, {"max_tokens", 4}});
  ASSERT_EQ(status, 200);
  EXPECT_EQ(http_request(port, "GET", "/nope").status, 404);
  // Each line is written when its response is done, so wait for both lines rather than a count.
  std::vector<json> lines;
  const json* completion = nullptr;
  const json* not_found = nullptr;
  ASSERT_TRUE(eventually([&] {
    lines.clear();
    completion = not_found = nullptr;
    std::istringstream in(server->stderr_text());
    for (std::string line; std::getline(in, line);) {
      auto j = json::parse(line, nullptr, false);
      if (j.is_object() && j.contains("status")) lines.push_back(j);
    }
    for (const auto& l : lines) {
      if (l.value("id", json()) == reply["id"]) completion = &l;
      if (l.value("path", "") == "/nope") not_found = &l;
    }
    return completion != nullptr && not_found != nullptr;
  }, 5000)) << server->stderr_text();
  EXPECT_EQ((*completion)["status"], 200);
  EXPECT_EQ((*completion)["prompt_tokens"], 2);
  EXPECT_EQ((*completion)["completion_tokens"], 4);
  EXPECT_EQ((*completion)["finish_reason"], "length");
  EXPECT_GE((*completion)["ttft_ms"].get<double>(), 0.0);
  EXPECT_GE((*completion)["total_ms"].get<double>(), (*completion)["ttft_ms"].get<double>());
  EXPECT_EQ((*not_found)["status"], 404);
}

}  // namespace
}  // namespace kvmesh::testing
