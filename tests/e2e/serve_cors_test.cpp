// Browser access to kvmesh-serve over real HTTP: with --allowed-origins a preflight is answered
// (no key needed) and every reply, streamed or whole, error or not, carries the CORS headers for
// an allowed origin and none for another; without the flag a preflight gets a 403 naming it.
#include <gtest/gtest.h>

#include "server_process.h"

namespace kvmesh::testing {
namespace {

using nlohmann::json;

const Headers kPreflight = {{"Origin", "http://app.example:3000"},
                            {"Access-Control-Request-Method", "POST"},
                            {"Access-Control-Request-Headers", "authorization, content-type"}};

TEST(ServeCors, AllowedOriginsGetPreflightsAndMarkedReplies) {
  std::string error;
  auto server = ServerProcess::start(
      {"--model", hf_model_dir(), "--allowed-origins", "http://app.example:3000", "--api-key", "k"}, &error);
  ASSERT_NE(server, nullptr) << error;
  const int port = server->port();

  HttpResponse preflight = http_request(port, "OPTIONS", "/v1/chat/completions", "", kPreflight);
  EXPECT_EQ(preflight.status, 204);
  EXPECT_EQ(preflight.header("access-control-allow-origin"), "http://app.example:3000");
  EXPECT_EQ(preflight.header("access-control-allow-methods"), "POST, OPTIONS");
  EXPECT_EQ(preflight.header("access-control-allow-headers"), "authorization, content-type");
  EXPECT_EQ(preflight.header("vary"), "Origin");
  EXPECT_EQ(preflight.header("content-length"), "");

  const Headers from_app = {{"Origin", "http://app.example:3000"}, {"Authorization", "Bearer k"}};
  const std::string body = json{{"prompt", "hi"}, {"max_tokens", 2}}.dump();
  HttpResponse whole = post_json(port, "/v1/completions", body, from_app);
  EXPECT_EQ(whole.status, 200) << whole.body;
  EXPECT_EQ(whole.header("access-control-allow-origin"), "http://app.example:3000");
  EXPECT_NE(whole.header("access-control-expose-headers").find("X-Request-Id"), std::string::npos);

  const json streamed = {{"prompt", "hi"}, {"max_tokens", 2}, {"stream", true}};
  auto conn = HttpConnection::connect(port);
  ASSERT_TRUE(conn && conn->send_request("POST", "/v1/completions", streamed.dump(), from_app));
  HttpResponse sse_head;
  ASSERT_TRUE(conn->read_head(&sse_head)) << sse_head.error;
  EXPECT_EQ(sse_head.status, 200);
  EXPECT_EQ(sse_head.header("content-type"), "text/event-stream; charset=utf-8");
  EXPECT_EQ(sse_head.header("access-control-allow-origin"), "http://app.example:3000");
  conn.reset();
  EXPECT_TRUE(stream_completion(port, "/v1/completions", streamed, from_app).done);

  // An error reply is readable by the page too (it can show the message), even without the key.
  HttpResponse unauthorized = post_json(port, "/v1/completions", body, {{"Origin", "http://app.example:3000"}});
  EXPECT_EQ(unauthorized.status, 401);
  EXPECT_EQ(unauthorized.header("access-control-allow-origin"), "http://app.example:3000");

  // Another origin: no CORS headers on its replies, and a 403 for its preflight.
  HttpResponse other = post_json(port, "/v1/completions", body, {{"Origin", "http://evil.example"}, {"Authorization", "Bearer k"}});
  EXPECT_EQ(other.status, 200);
  EXPECT_EQ(other.header("access-control-allow-origin"), "");
  HttpResponse other_preflight = http_request(port, "OPTIONS", "/v1/completions", "",
                                              {{"Origin", "http://evil.example"}, {"Access-Control-Request-Method", "POST"}});
  EXPECT_EQ(other_preflight.status, 403);
  EXPECT_EQ(other_preflight.header("access-control-allow-origin"), "");
  EXPECT_NE(other_preflight.body.find("--allowed-origins"), std::string::npos) << other_preflight.body;

  // A plain OPTIONS lists the route's methods; an unknown route stays a 404.
  HttpResponse plain = http_request(port, "OPTIONS", "/health");
  EXPECT_EQ(plain.status, 204);
  EXPECT_EQ(plain.header("allow"), "GET, OPTIONS");
  EXPECT_EQ(http_request(port, "OPTIONS", "/v2/nothing", "", kPreflight).status, 404);
}

TEST(ServeCors, WithoutTheFlagAPreflightIsRefusedNamingIt) {
  std::string error;
  auto server = ServerProcess::start({"--model", hf_model_dir()}, &error);
  ASSERT_NE(server, nullptr) << error;
  HttpResponse preflight = http_request(server->port(), "OPTIONS", "/v1/completions", "", kPreflight);
  EXPECT_EQ(preflight.status, 403);
  EXPECT_NE(preflight.body.find("--allowed-origins"), std::string::npos) << preflight.body;
  HttpResponse reply = post_json(server->port(), "/v1/completions", json{{"prompt", "hi"}, {"max_tokens", 2}}.dump(),
                                 {{"Origin", "http://app.example:3000"}});
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.header("access-control-allow-origin"), "");
}

}  // namespace
}  // namespace kvmesh::testing
