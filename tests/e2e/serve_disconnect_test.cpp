// A client that goes away stops its generation: while queued, during prefill or during decode,
// streaming or not, the engine drops its sequence at the next step and the KV pages in /metrics
// return to their idle value, long before the request would have finished on its own.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cmath>

#include "server_process.h"

namespace kvmesh::testing {
namespace {

using nlohmann::json;

constexpr int kQuickMs = 3000;  // the cancelled request would need many seconds more

class ServeDisconnect : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string error;
    // 40 ms a step, one sequence at a time, 16-token prefill chunks: a 400-token prompt prefills
    // for about a second and a 400-token completion decodes for 16 s.
    server_ = ServerProcess::start({"--model", hf_model_dir(), "--debug-step-delay-ms", "40", "--max-num-seqs", "1",
                                    "--max-batch-tokens", "16"},
                                   &error)
                  .release();
    ASSERT_NE(server_, nullptr) << error;
  }
  static void TearDownTestSuite() { delete server_; }

  void TearDown() override {
    // Idle again, and still serving.
    EXPECT_TRUE(eventually([] { return server_->metric("kvmesh_kv_pages_used") == 0.0; }, kQuickMs));
    auto [status, reply] = post_for_json(server_->port(), "/v1/completions",
                                         json{{"prompt", "ok"}, {"max_tokens", 2}, {"temperature", 0}});
    EXPECT_EQ(status, 200) << reply.dump();
  }

  static std::unique_ptr<HttpConnection> send(const json& body) {
    auto conn = HttpConnection::connect(server_->port());
    EXPECT_TRUE(conn && conn->send_request("POST", "/v1/completions", body.dump()));
    return conn;
  }
  static json long_decode(bool stream) {
    return json{{"prompt", "A long story"}, {"max_tokens", 400}, {"ignore_eos", true}, {"stream", stream}};
  }
  static json long_prefill(bool stream) {
    return json{{"prompt", std::vector<int>(400, 318)}, {"max_tokens", 5}, {"stream", stream}};
  }
  static double gauge(const char* name) { return server_->metric(name); }
  static ServerProcess* server_;
};
ServerProcess* ServeDisconnect::server_ = nullptr;

TEST_F(ServeDisconnect, DuringDecodeStreaming) {
  auto conn = send(long_decode(true));
  HttpResponse head;
  ASSERT_TRUE(conn->read_head(&head, 10000)) << head.error;
  ASSERT_EQ(head.status, 200);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(conn->next_event(10000)) << "event " << i;
  EXPECT_GT(gauge("kvmesh_kv_pages_used"), 0.0);
  conn->close();
  EXPECT_TRUE(eventually([] { return gauge("kvmesh_kv_pages_used") == 0.0; }, kQuickMs));
  EXPECT_EQ(gauge("kvmesh_num_requests_running"), 0.0);
  // Logged as 499 (client closed request), without the prompt.
  EXPECT_TRUE(eventually([] { return server_->stderr_text().find("\"status\":499") != std::string::npos; }, 2000));
  EXPECT_EQ(server_->stderr_text().find("A long story"), std::string::npos) << "prompts never reach the log";
}

TEST_F(ServeDisconnect, DuringDecodeNotStreaming) {
  const double before = gauge("kvmesh_generation_tokens_total");
  auto conn = send(long_decode(false));
  ASSERT_TRUE(eventually([&] { return gauge("kvmesh_generation_tokens_total") >= before + 3; }, 10000));
  conn->close();
  EXPECT_TRUE(eventually([] { return gauge("kvmesh_kv_pages_used") == 0.0; }, kQuickMs));
  const double after = gauge("kvmesh_generation_tokens_total");
  EXPECT_LT(after - before, 100.0) << "generation went on after the client left";
}

TEST_F(ServeDisconnect, DuringPrefill) {
  for (bool stream : {false, true}) {
    SCOPED_TRACE(stream ? "streaming" : "not streaming");
    const double tokens_before = gauge("kvmesh_generation_tokens_total");
    auto conn = send(long_prefill(stream));
    // Prefill has started (pages are filling) but no token is out yet.
    ASSERT_TRUE(eventually([] { return gauge("kvmesh_kv_pages_used") >= 3.0; }, 10000));
    EXPECT_LT(gauge("kvmesh_kv_pages_used"), 25.0) << "prefill finished before the test could disconnect";
    conn->close();
    EXPECT_TRUE(eventually([] { return gauge("kvmesh_kv_pages_used") == 0.0; }, kQuickMs));
    EXPECT_EQ(gauge("kvmesh_generation_tokens_total"), tokens_before) << "no token of a cancelled prefill";
  }
}

TEST_F(ServeDisconnect, WhileQueued) {
  for (bool stream : {false, true}) {
    SCOPED_TRACE(stream ? "streaming" : "not streaming");
    auto running = send(long_decode(true));
    HttpResponse head;
    ASSERT_TRUE(running->read_head(&head, 10000)) << head.error;
    ASSERT_TRUE(running->next_event(10000));
    auto queued = send(long_decode(stream));
    ASSERT_TRUE(eventually([] { return gauge("kvmesh_num_requests_waiting") == 1.0; }, 10000));
    queued->close();
    EXPECT_TRUE(eventually([] { return gauge("kvmesh_num_requests_waiting") == 0.0; }, kQuickMs));
    EXPECT_EQ(gauge("kvmesh_num_requests_running"), 1.0) << "the running request is not affected";
    ASSERT_TRUE(running->next_event(10000)) << "the running stream goes on";
    running->close();
    EXPECT_TRUE(eventually([] { return gauge("kvmesh_kv_pages_used") == 0.0; }, kQuickMs));
  }
}

// A client that sends its request and then half-closes its socket (shutdown(SHUT_WR), as `nc -N`
// does) has left as far as kvmesh can tell (a full close looks the same until a reply is written):
// its generation stops, it gets no reply, and the request is logged as 499.
TEST_F(ServeDisconnect, HalfCloseAfterTheRequestIsADisconnect) {
  for (bool stream : {false, true}) {
    SCOPED_TRACE(stream ? "streaming" : "not streaming");
    const auto closed = [] {
      const double n = gauge("kvmesh_http_requests_total{code=\"499\"}");
      return std::isnan(n) ? 0.0 : n;  // absent until the first
    };
    const double closed_before = closed();
    auto conn = send(long_decode(stream));
    ASSERT_TRUE(eventually([] { return gauge("kvmesh_num_requests_running") == 1.0; }, 10000));
    ASSERT_EQ(::shutdown(conn->fd(), SHUT_WR), 0);
    EXPECT_TRUE(eventually([] { return gauge("kvmesh_kv_pages_used") == 0.0; }, kQuickMs));
    EXPECT_TRUE(conn->wait_closed(kQuickMs));
    EXPECT_TRUE(eventually([&] { return closed() == closed_before + 1; }, kQuickMs));
  }
}

// A client that closes as soon as it has read [DONE] got the whole stream: counted as 200, never
// as 499 (its close may reach the server before the completion of the last write runs).
TEST(ServeStreamEnd, CloseRightAfterDoneIsNotADisconnect) {
  std::string error;
  auto server = ServerProcess::start({"--model", hf_model_dir()}, &error);
  ASSERT_NE(server, nullptr) << error;
  const json body = {{"prompt", "Hello"}, {"max_tokens", 4}, {"ignore_eos", true}, {"stream", true}};
  constexpr int kRounds = 25, kStreams = 3;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<std::unique_ptr<HttpConnection>> conns;
    for (int i = 0; i < kStreams; ++i) {
      conns.push_back(HttpConnection::connect(server->port()));
      ASSERT_TRUE(conns.back() && conns.back()->send_request("POST", "/v1/completions", body.dump()));
    }
    for (auto& conn : conns) {
      HttpResponse head;
      ASSERT_TRUE(conn->read_head(&head, 10000)) << head.error;
      for (int events = 0;; ++events) {
        ASSERT_LT(events, 16);
        auto event = conn->next_event(10000);
        ASSERT_TRUE(event.has_value());
        if (*event == "[DONE]") break;
      }
      conn->close();
    }
  }
  const double total = kRounds * kStreams;  // 200s also count /health and /metrics
  EXPECT_TRUE(eventually([&] { return server->metric("kvmesh_http_requests_total{code=\"200\"}") >= total; }, 5000))
      << server->metrics();
  EXPECT_TRUE(eventually(
      [&] { return server->metric("kvmesh_request_success_total{finished_reason=\"length\"}") == total; }, 5000))
      << server->metrics();
  EXPECT_TRUE(std::isnan(server->metric("kvmesh_http_requests_total{code=\"499\"}"))) << server->metrics();
}

}  // namespace
}  // namespace kvmesh::testing
