// Bad input of every kind gets its status code and an OpenAI-shaped JSON error, and the server
// keeps answering other clients while and after it is sent: bad JSON and parameters, unknown
// routes, models and methods, context overflow, oversized bodies and headers, malformed HTTP,
// garbage bytes and slowloris connections.
#include <gtest/gtest.h>

#include <thread>

#include "server_process.h"

namespace kvmesh::testing {
namespace {

using nlohmann::json;

class ServeErrors : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string error;
    server_ = ServerProcess::start({"--model", hf_model_dir(), "--max-body-bytes", "8KiB", "--max-header-bytes",
                                    "4KiB", "--max-header-count", "40", "--read-timeout", "1"},
                                   &error)
                  .release();
    ASSERT_NE(server_, nullptr) << error;
  }
  static void TearDownTestSuite() { delete server_; }
  static int port() { return server_->port(); }

  // A good request still gets a good answer.
  static void expect_still_serving() {
    auto [status, reply] = post_for_json(port(), "/v1/completions",
                                         json{{"prompt", "Once upon a time"}, {"max_tokens", 3}, {"temperature", 0}});
    EXPECT_EQ(status, 200) << reply.dump();
    EXPECT_EQ(reply["choices"][0]["finish_reason"], "length");
  }
  // The OpenAI error shape, with `param` when given.
  static void expect_error(const HttpResponse& res, int status, const std::string& param = "") {
    EXPECT_EQ(res.status, status) << res.body << res.error;
    auto body = json::parse(res.body, nullptr, false);
    ASSERT_TRUE(body.is_object() && body.contains("error")) << res.body;
    const json& e = body["error"];
    EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty());
    EXPECT_TRUE(e["type"].is_string());
    EXPECT_TRUE(e.contains("param") && e.contains("code"));
    if (!param.empty()) {
      EXPECT_EQ(e["param"], param) << res.body;
    }
    EXPECT_EQ(res.header("content-type"), "application/json");
  }
  static ServerProcess* server_;
};
ServerProcess* ServeErrors::server_ = nullptr;

TEST_F(ServeErrors, InvalidJsonAndBodies) {
  expect_error(post_json(port(), "/v1/completions", "{\"prompt\": \"hi\""), 400);
  expect_error(post_json(port(), "/v1/completions", ""), 400);
  expect_error(post_json(port(), "/v1/completions", "[1, 2]"), 400);
  expect_error(post_json(port(), "/v1/completions", std::string(3000, '[')), 400);
  expect_error(post_json(port(), "/v1/completions", "{\"prompt\": \"\xff\xfe\"}"), 400);
  expect_error(post_json(port(), "/v1/chat/completions", "{\"messages\": 5}"), 400, "messages");
  expect_still_serving();
}

TEST_F(ServeErrors, ParametersAreValidatedByName) {
  const std::vector<std::pair<json, std::string>> cases = {
      {{{"prompt", "hi"}, {"temperature", 5}}, "temperature"},
      {{{"prompt", "hi"}, {"top_p", 0}}, "top_p"},
      {{{"prompt", "hi"}, {"n", 0}}, "n"},
      {{{"prompt", "hi"}, {"max_tokens", -1}}, "max_tokens"},
      {{{"prompt", "hi"}, {"logprobs", 99}}, "logprobs"},
      {{{"prompt", "hi"}, {"stop", 5}}, "stop"},
      {{{"prompt", "hi"}, {"stream", "yes"}}, "stream"},
      {{{"max_tokens", 3}}, "prompt"},
      {{{"prompt", {1, 2, 99999999}}}, "prompt"},
      {{{"prompt", "hi"}, {"logit_bias", {{"99999999", 1}}}}, "logit_bias"},
      {{{"prompt", "hi"}, {"suffix", "x"}}, "suffix"},
  };
  for (const auto& [body, param] : cases) {
    expect_error(post_json(port(), "/v1/completions", body.dump()), 400, param);
  }
  expect_error(post_json(port(), "/v1/chat/completions", json{{"max_tokens", 3}}.dump()), 400, "messages");
  const json tools = {{"messages", {{{"role", "user"}, {"content", "Hi"}}}},
                      {"tools", {{{"type", "function"}, {"function", {{"name", "f"}}}}}}};
  expect_error(post_json(port(), "/v1/chat/completions", tools.dump()), 400, "tools");
  // Unknown extra fields are ignored.
  auto [status, reply] = post_for_json(port(), "/v1/completions",
                                       json{{"prompt", "hi"}, {"max_tokens", 2}, {"frobnicate", {1, 2}}});
  EXPECT_EQ(status, 200) << reply.dump();
  expect_still_serving();
}

TEST_F(ServeErrors, ContextOverflowAndUnknownModel) {
  std::vector<int> long_prompt(500, 464);
  auto res = post_json(port(), "/v1/completions", json{{"prompt", long_prompt}, {"max_tokens", 100}}.dump());
  expect_error(res, 400);
  EXPECT_NE(res.body.find("maximum context length is 512 tokens"), std::string::npos) << res.body;
  res = post_json(port(), "/v1/completions", json{{"prompt", "hi"}, {"model", "gpt-4"}}.dump());
  expect_error(res, 404, "model");
  EXPECT_EQ(json::parse(res.body)["error"]["code"], "model_not_found");
  expect_error(http_request(port(), "GET", "/v1/models/gpt-4"), 404, "model");
  expect_still_serving();
}

TEST_F(ServeErrors, UnknownRoutesAndWrongMethods) {
  expect_error(http_request(port(), "GET", "/v1/nothing"), 404);
  expect_error(http_request(port(), "POST", "/v2/completions", "{}"), 404);
  auto res = http_request(port(), "GET", "/v1/completions");
  expect_error(res, 405);
  EXPECT_EQ(res.header("allow"), "POST");
  expect_error(http_request(port(), "DELETE", "/v1/models"), 405);
  expect_error(http_request(port(), "POST", "/health", "{}"), 405);
  expect_still_serving();
}

TEST_F(ServeErrors, BodyTooLarge) {
  const std::string big = json{{"prompt", std::string(20000, 'a')}}.dump();
  expect_error(post_json(port(), "/v1/completions", big), 413);
  // Refused from the Content-Length alone, before any body byte is sent.
  auto conn = HttpConnection::connect(port());
  ASSERT_TRUE(conn);
  ASSERT_TRUE(conn->send_raw("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n"));
  HttpResponse head;
  ASSERT_TRUE(conn->read_head(&head, 5000)) << head.error;
  EXPECT_EQ(head.status, 413);
  expect_still_serving();
}

TEST_F(ServeErrors, HeaderLimits) {
  expect_error(http_request(port(), "GET", "/v1/models", "", {{"X-Big", std::string(6000, 'x')}}), 431);
  Headers many;
  for (int i = 0; i < 60; ++i) many.emplace_back("X-H" + std::to_string(i), "v");
  expect_error(http_request(port(), "GET", "/v1/models", "", many), 431);
  expect_still_serving();
}

TEST_F(ServeErrors, MalformedHttpAndGarbage) {
  const std::vector<std::string> raws = {"GARBAGE\r\n\r\n", "GET / HTTP/9.9\r\n\r\n", "GET /health HTTP/1.1\r\nBad Header\r\n\r\n",
                                "POST /v1/completions HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
                                std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11) + "\r\n\r\n"};
  for (const std::string& raw : raws) {
    auto conn = HttpConnection::connect(port());
    ASSERT_TRUE(conn);
    conn->send_raw(raw);
    HttpResponse head;
    if (conn->read_head(&head, 5000)) {
      EXPECT_EQ(head.status, 400) << raw;
    }
    EXPECT_TRUE(conn->wait_closed(5000)) << "the server closes after a malformed request";
  }
  // A chunked request body is fine.
  auto conn = HttpConnection::connect(port());
  ASSERT_TRUE(conn);
  const std::string body = json{{"prompt", "hello"}, {"max_tokens", 2}}.dump();
  char size[16];
  std::snprintf(size, sizeof size, "%zx", body.size());
  conn->send_raw("POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + std::string(size) +
                 "\r\n" + body + "\r\n0\r\n\r\n");
  HttpResponse res;
  ASSERT_TRUE(conn->read_head(&res, 10000)) << res.error;
  EXPECT_EQ(res.status, 200);
  expect_still_serving();
}

// A body in a coding the server does not read is refused by name (501, 415), not read as empty.
TEST_F(ServeErrors, UnsupportedCodingsAreRefused) {
  const std::string body = json{{"prompt", "hello"}, {"max_tokens", 2}}.dump();
  struct Case {
    std::string header;
    int status;
  };
  for (const Case& c : {Case{"Transfer-Encoding: gzip", 501}, Case{"Transfer-Encoding: deflate", 501},
                        Case{"Content-Encoding: gzip", 415}, Case{"Content-Encoding: br", 415}}) {
    auto conn = HttpConnection::connect(port());
    ASSERT_TRUE(conn);
    conn->send_raw("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + c.header +
                   "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
    HttpResponse res;
    ASSERT_TRUE(conn->read_head(&res, 5000)) << c.header << ": " << res.error;
    ASSERT_TRUE(conn->read_body(&res.body, 5000)) << c.header;
    expect_error(res, c.status);
    EXPECT_NE(res.body.find(c.header.substr(c.header.find(':') + 2, 4)), std::string::npos) << res.body;
    EXPECT_TRUE(conn->wait_closed(5000));
  }
  auto identity = post_json(port(), "/v1/completions", body, {{"Content-Encoding", "identity"}});
  EXPECT_EQ(identity.status, 200) << identity.body;
  expect_still_serving();
}

// A body shorter than its Content-Length gets a 408 when --read-timeout (1 s here) fires, and the
// connection closes; so does a request head that stops half-way.
TEST_F(ServeErrors, IncompleteRequestGets408) {
  for (const std::string& partial :
       {std::string("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"prompt\""),
        std::string("POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Half")}) {
    auto conn = HttpConnection::connect(port());
    ASSERT_TRUE(conn);
    conn->send_raw(partial);
    HttpResponse res;
    ASSERT_TRUE(conn->read_head(&res, 5000)) << res.error;
    ASSERT_TRUE(conn->read_body(&res.body, 5000));
    expect_error(res, 408);
    EXPECT_NE(res.body.find("--read-timeout"), std::string::npos) << res.body;
    EXPECT_TRUE(conn->wait_closed(5000));
  }
  expect_still_serving();
}

TEST_F(ServeErrors, SlowlorisIsDroppedAndBlocksNobody) {
  std::vector<std::unique_ptr<HttpConnection>> slow;
  for (int i = 0; i < 20; ++i) {
    slow.push_back(HttpConnection::connect(port()));
    ASSERT_TRUE(slow.back());
    slow.back()->send_raw("POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ");
  }
  const auto start = std::chrono::steady_clock::now();
  expect_still_serving();
  EXPECT_EQ(http_request(port(), "GET", "/health").status, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  for (auto& c : slow) {
    c->send_raw("a");  // trickling bytes does not extend the deadline
    EXPECT_TRUE(c->wait_closed(5000)) << "slow client not dropped after --read-timeout";
  }
  // An idle keep-alive connection is dropped too.
  auto idle = HttpConnection::connect(port());
  ASSERT_TRUE(idle);
  EXPECT_TRUE(idle->wait_closed(5000));
  expect_still_serving();
}

TEST_F(ServeErrors, KeepAliveServesSeveralRequests) {
  auto conn = HttpConnection::connect(port());
  ASSERT_TRUE(conn);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(conn->send_request("POST", "/v1/completions", json{{"prompt", "hi"}, {"max_tokens", 2}}.dump()));
    HttpResponse res;
    ASSERT_TRUE(conn->read_head(&res, 10000)) << res.error;
    ASSERT_TRUE(conn->read_body(&res.body, 10000));
    EXPECT_EQ(res.status, 200) << res.body;
    EXPECT_EQ(json::parse(res.body)["object"], "text_completion");
  }
}

}  // namespace
}  // namespace kvmesh::testing
