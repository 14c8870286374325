// kvmesh-load against a server that is not kvmesh-serve: only /v1/completions, /v1/models and
// /health (no /ready, /tokenize or /metrics), closing every connection after one response.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "command_runner.h"
#include "fake_openai_server.h"

namespace kvmesh::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// kvmesh-load against 127.0.0.1:port with `args` (stdout and stderr together in `out`).
CommandResult load(int port, const std::string& args, int timeout_s = 60) {
  CommandResult r = run_command(std::string(KVMESH_BIN_DIR) + "/client/kvmesh-load --port " + std::to_string(port) +
                                    " --quiet " + args,
                                timeout_s);
  r.out += r.err;
  return r;
}

std::vector<json> read_jsonl(const fs::path& p) {
  std::vector<json> out;
  std::ifstream in(p);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

class LoadForeignServer : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("kvmesh-load-foreign-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

// Ready through /health (after two 503s); prompt tokens from usage; a new connection per request.
TEST_F(LoadForeignServer, HealthUsageAndConnectionClose) {
  FakeOpenAiServer server(FakeOpenAiServer::Options{true, 2});
  ASSERT_NE(server.port(), 0);
  const fs::path result = dir_ / "r.json", requests = dir_ / "r.jsonl";
  CommandResult run = load(server.port(), "--ready-timeout 20 --num-requests 8 --concurrency 2 --input-len 12 "
                                          "--output-len 5 --result-json " + result.string() +
                                          " --requests-jsonl " + requests.string());
  ASSERT_EQ(run.exit_code, 0) << run.out;
  EXPECT_EQ(server.count("GET /health"), 3);
  EXPECT_EQ(server.count("POST /v1/completions"), 8);
  const json r = json::parse(read_text_file(result.string()));
  EXPECT_EQ(r["completed"], 8);
  EXPECT_EQ(r["failed"], 0);
  EXPECT_EQ(r["model_id"], "fake-model");
  EXPECT_EQ(r["total_output_tokens"], 8 * 5);
  const auto lines = read_jsonl(requests);
  ASSERT_EQ(lines.size(), 8u);
  int64_t prompt_tokens = 0;
  for (const json& l : lines) {
    EXPECT_EQ(l["outcome"], "ok") << l.dump();
    EXPECT_EQ(l["prompt_tokens"], 12) << "the server's usage (its tokens are words)";
    EXPECT_EQ(l["expected_input_tokens"], -1) << "not counted without /tokenize";
    prompt_tokens += l["prompt_tokens"].get<int64_t>();
  }
  EXPECT_EQ(r["total_input_tokens"], prompt_tokens);
  EXPECT_NE(run.out.find("no /tokenize"), std::string::npos) << run.out;
}

// A server that closes keep-alive connections without saying so: every request still completes,
// streamed or not.
TEST_F(LoadForeignServer, SilentCloseOpensFreshConnections) {
  FakeOpenAiServer server(FakeOpenAiServer::Options{false, 0});
  ASSERT_NE(server.port(), 0);
  const fs::path result = dir_ / "r.json";
  for (const char* mode : {"", "--no-stream"}) {
    CommandResult run = load(server.port(), std::string(mode) + " --ready-timeout 20 --num-requests 30 --concurrency 3 "
                                            "--input-len 6 --output-len 3 --warmup 2 --result-json " + result.string());
    ASSERT_EQ(run.exit_code, 0) << mode << run.out;
    const json r = json::parse(read_text_file(result.string()));
    EXPECT_EQ(r["completed"], 30) << mode << r.dump();
    EXPECT_EQ(r["failed"], 0) << mode << r.dump();
  }
}

// No usage in the replies: prompt tokens are unknown (null), not 0; output tokens are counted from
// the chunks.
TEST_F(LoadForeignServer, NoUsageLeavesPromptTokensUnknown) {
  FakeOpenAiServer server(FakeOpenAiServer::Options{true, 0, false});
  ASSERT_NE(server.port(), 0);
  const fs::path result = dir_ / "r.json", requests = dir_ / "r.jsonl";
  CommandResult run = load(server.port(), "--ready-timeout 20 --num-requests 4 --concurrency 2 --input-len 7 "
                                          "--output-len 4 --result-json " + result.string() + " --requests-jsonl " +
                                          requests.string());
  ASSERT_EQ(run.exit_code, 0) << run.out;
  const json r = json::parse(read_text_file(result.string()));
  EXPECT_EQ(r["completed"], 4);
  EXPECT_EQ(r["total_input_tokens"], nullptr);
  EXPECT_EQ(r["prompt_tokens_unknown"], 4);
  EXPECT_EQ(r["total_output_tokens"], 16);
  for (const json& l : read_jsonl(requests)) EXPECT_EQ(l["prompt_tokens"], nullptr) << l.dump();
  EXPECT_NE(run.out.find("unknown (the server reported no prompt_tokens)"), std::string::npos) << run.out;
}

// While it waits, kvmesh-load says every second or so (a short --ready-timeout) what it waits for
// and why: a port nobody listens on, then a server whose /health keeps answering 503.
TEST(LoadWaiting, SaysWhatItWaitsFor) {
  const int reserved = ::socket(AF_INET, SOCK_STREAM, 0);  // bound, not listening: connections refused
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::bind(reserved, reinterpret_cast<sockaddr*>(&addr), len), 0);
  ASSERT_EQ(::getsockname(reserved, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string port = std::to_string(ntohs(addr.sin_port));
  CommandResult refused = load(ntohs(addr.sin_port), "--ready-timeout 3");
  ::close(reserved);
  EXPECT_EQ(refused.exit_code, 1) << refused.out;
  EXPECT_NE(refused.out.find("kvmesh-load: waiting for http://127.0.0.1:" + port + "/ready: connection refused ("),
            std::string::npos)
      << refused.out;
  EXPECT_NE(refused.out.find(" s of 3 s)"), std::string::npos) << refused.out;

  FakeOpenAiServer server(FakeOpenAiServer::Options{true, 1000000});
  ASSERT_NE(server.port(), 0);
  CommandResult busy = load(server.port(), "--ready-timeout 3");
  EXPECT_EQ(busy.exit_code, 1) << busy.out;
  EXPECT_NE(busy.out.find("waiting for http://127.0.0.1:" + std::to_string(server.port()) + "/health: HTTP 503 ("),
            std::string::npos)
      << busy.out;
  EXPECT_EQ(server.count("GET /ready"), 1) << "a 404 there is not asked again";
}

}  // namespace
}  // namespace kvmesh::testing
