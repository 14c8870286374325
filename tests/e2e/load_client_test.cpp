// kvmesh-load against a real kvmesh-serve on 127.0.0.1 (the 4-layer, 32-wide test checkpoint):
// counts add up, TTFT <= E2E, pinned lengths hold, the JSON/JSONL/HTML outputs are complete, an
// impossible SLO exits 3, dropped requests leave no KV pages in use, datasets and multi-turn
// chats run, and the timing matches a server whose step delay is known.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "server_process.h"

namespace kvmesh::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::string load_binary() { return KVMESH_BIN_DIR "/client/kvmesh-load"; }

struct LoadRun {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// Runs kvmesh-load against `port` with `args`; killed after timeout_s.
LoadRun run_load(int port, const std::vector<std::string>& args, int timeout_s = 50) {
  LoadRun r;
  char out_template[] = "/tmp/kvmesh-load-out-XXXXXX";
  const int out_fd = ::mkstemp(out_template);
  if (out_fd < 0) return r;
  std::vector<std::string> argv_s = {load_binary(), "--port", std::to_string(port), "--quiet", "--ready-timeout", "20"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out_fd, 1);
    ::dup2(out_fd, 2);
    ::execv(argv[0], argv.data());
    std::_Exit(127);
  }
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  while (::waitpid(pid, &status, WNOHANG) != pid) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  ::close(out_fd);
  std::ifstream in(out_template);
  std::stringstream ss;
  ss << in.rdbuf();
  r.output = ss.str();
  std::remove(out_template);
  return r;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<json> read_jsonl(const fs::path& p) {
  std::vector<json> out;
  std::ifstream in(p);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

class LoadClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string error;
    server_ = ServerProcess::start({"--model", hf_model_dir()}, &error).release();
    ASSERT_NE(server_, nullptr) << error;
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    dir_ = fs::temp_directory_path() / ("kvmesh-load-test-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static ServerProcess* server_;
  fs::path dir_;
};
ServerProcess* LoadClientTest::server_ = nullptr;

TEST_F(LoadClientTest, ClosedLoopCountsLengthsAndReports) {
  const fs::path result = dir_ / "r.json", requests = dir_ / "r.jsonl", html = dir_ / "r.html";
  LoadRun run = run_load(server_->port(), {"--num-requests", "24", "--concurrency", "4", "--input-len", "24",
                                           "--output-len", "10", "--warmup", "2", "--seed", "3", "--result-json",
                                           result.string(), "--requests-jsonl", requests.string(), "--html",
                                           html.string()});
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("Successful requests:"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("kvmesh_generation_tokens_total"), std::string::npos) << run.output;
  json r = json::parse(read_text(result));
  for (const char* key : {"completed", "failed", "total_input_tokens", "total_output_tokens", "request_throughput",
                          "output_throughput", "total_token_throughput", "mean_ttft_ms", "median_ttft_ms",
                          "p99_ttft_ms", "mean_tpot_ms", "median_tpot_ms", "p99_tpot_ms", "mean_itl_ms",
                          "median_itl_ms", "p99_itl_ms", "mean_e2el_ms", "median_e2el_ms", "p99_e2el_ms",
                          "duration", "max_concurrency", "server_metrics"}) {
    EXPECT_TRUE(r.contains(key)) << key;
  }
  EXPECT_EQ(r["num_prompts"], 24);
  EXPECT_EQ(r["completed"].get<int>() + r["failed"].get<int>(), 24);
  EXPECT_EQ(r["completed"], 24);
  EXPECT_EQ(r["total_input_tokens"], 24 * 24);
  EXPECT_EQ(r["total_output_tokens"], 24 * 10);
  EXPECT_LE(r["max_concurrent_requests"].get<int>(), 4);
  EXPECT_EQ(r["server_metrics"]["counters"]["kvmesh_generation_tokens_total"], 24 * 10);  // warm-up excluded
  auto lines = read_jsonl(requests);
  ASSERT_EQ(lines.size(), 24u);
  for (const json& l : lines) {
    EXPECT_EQ(l["outcome"], "ok");
    EXPECT_EQ(l["prompt_tokens"], 24);
    EXPECT_EQ(l["completion_tokens"], 10);
    EXPECT_LE(l["ttft_ms"].get<double>(), l["e2el_ms"].get<double>());
    EXPECT_EQ(l["itl_ms"].size(), 9u);  // one per token after the first
  }
  const std::string page = read_text(html);
  EXPECT_NE(page.find("<svg"), std::string::npos);
  EXPECT_NE(page.find("TTFT CDF"), std::string::npos);
  EXPECT_EQ(page.find("<script"), std::string::npos);
}

TEST_F(LoadClientTest, OpenLoopChatExactPromptLengths) {
  const fs::path result = dir_ / "r.json", requests = dir_ / "r.jsonl";
  LoadRun run = run_load(server_->port(), {"--endpoint", "chat", "--rate", "40", "--burstiness", "0.5",
                                           "--concurrency", "6", "--num-requests", "12", "--input-len", "30",
                                           "--output-len", "6", "--result-json", result.string(),
                                           "--requests-jsonl", requests.string()});
  ASSERT_EQ(run.exit_code, 0) << run.output;
  json r = json::parse(read_text(result));
  EXPECT_EQ(r["completed"], 12);
  EXPECT_EQ(r["request_rate"], 40.0);
  for (const json& l : read_jsonl(requests)) {
    EXPECT_EQ(l["prompt_tokens"], 30) << "chat template included";
    EXPECT_EQ(l["completion_tokens"], 6);
    EXPECT_LE(l["scheduled_ms"].get<double>(), l["sent_ms"].get<double>());
    EXPECT_GE(l["sched_e2el_ms"].get<double>(), l["e2el_ms"].get<double>());
  }
}

TEST_F(LoadClientTest, ImpossibleSloExitsThree) {
  const fs::path result = dir_ / "r.json";
  LoadRun run = run_load(server_->port(), {"--num-requests", "4", "--concurrency", "2", "--input-len", "8",
                                           "--output-len", "4", "--slo", "ttft:0.001,e2e:0.001", "--result-json",
                                           result.string()});
  EXPECT_EQ(run.exit_code, 3) << run.output;
  EXPECT_NE(run.output.find("BREACHED"), std::string::npos) << run.output;
  json r = json::parse(read_text(result));
  EXPECT_EQ(r["slo_breached"], true);
  EXPECT_EQ(r["goodput_fraction"], 0.0);
  // A generous SLO passes.
  LoadRun ok = run_load(server_->port(), {"--num-requests", "4", "--concurrency", "2", "--input-len", "8",
                                          "--output-len", "4", "--slo", "ttft:60000,tpot:60000,e2e:60000"});
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
}

TEST_F(LoadClientTest, ReplayAndShareGpt) {
  const fs::path trace = dir_ / "trace.jsonl", share = dir_ / "share.json", requests = dir_ / "r.jsonl";
  std::ofstream(trace) << "{\"timestamp_ms\": 1000, \"prompt\": \"Hello there\", \"max_tokens\": 3}\n"
                       << "{\"timestamp_ms\": 1300, \"prompt\": \"How are you today?\", \"max_tokens\": 4}\n"
                       << "{\"timestamp_ms\": 1150, \"prompt\": \"A third one\", \"max_tokens\": 2}\n";
  LoadRun replay = run_load(server_->port(), {"--dataset", "replay:" + trace.string(), "--requests-jsonl",
                                              requests.string()});
  ASSERT_EQ(replay.exit_code, 0) << replay.output;
  auto lines = read_jsonl(requests);
  ASSERT_EQ(lines.size(), 3u);
  const double expected_ms[] = {0.0, 150.0, 300.0};
  const int expected_tokens[] = {3, 2, 4};
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_NEAR(lines[i]["scheduled_ms"].get<double>(), expected_ms[i], 1e-6);
    EXPECT_EQ(lines[i]["completion_tokens"], expected_tokens[i]);
  }
  json conversations = json::array();
  for (int i = 0; i < 6; ++i) {
    conversations.push_back({{"id", std::to_string(i)},
                             {"conversations", {{{"from", "human"}, {"value", "Tell me a story about a river number " + std::to_string(i)}},
                                                {{"from", "gpt"}, {"value", "Once upon a time there was a river that ran far away."}}}}});
  }
  std::ofstream(share) << conversations.dump();
  LoadRun sharegpt = run_load(server_->port(), {"--dataset", "sharegpt:" + share.string(), "--num-requests", "4",
                                                "--concurrency", "2", "--requests-jsonl", requests.string()});
  ASSERT_EQ(sharegpt.exit_code, 0) << sharegpt.output;
  lines = read_jsonl(requests);
  ASSERT_EQ(lines.size(), 4u);
  for (const json& l : lines) EXPECT_EQ(l["completion_tokens"], l["expected_output_tokens"]);
}

TEST_F(LoadClientTest, MultiturnSessionsGrow) {
  const fs::path requests = dir_ / "r.jsonl", result = dir_ / "r.json";
  LoadRun run = run_load(server_->port(), {"--workload", "multiturn", "--endpoint", "chat", "--sessions", "3",
                                           "--turns", "3", "--system-prompt-len", "40", "--input-len", "8",
                                           "--output-len", "5", "--concurrency", "2", "--requests-jsonl",
                                           requests.string(), "--result-json", result.string()});
  ASSERT_EQ(run.exit_code, 0) << run.output;
  auto lines = read_jsonl(requests);
  ASSERT_EQ(lines.size(), 9u);
  std::map<int, std::vector<json>> by_session;
  for (const json& l : lines) by_session[l["session"].get<int>()].push_back(l);
  ASSERT_EQ(by_session.size(), 3u);
  for (auto& [s, turns] : by_session) {
    ASSERT_EQ(turns.size(), 3u);
    for (size_t t = 1; t < turns.size(); ++t) {
      EXPECT_EQ(turns[t]["turn"], static_cast<int>(t));
      EXPECT_GT(turns[t]["prompt_tokens"].get<int>(), turns[t - 1]["prompt_tokens"].get<int>() + 5);
      EXPECT_GE(turns[t]["sent_ms"].get<double>(), turns[t - 1]["sent_ms"].get<double>() + turns[t - 1]["e2el_ms"].get<double>() - 1e-6);
    }
  }
}

TEST_F(LoadClientTest, DurationRampSweepAndNoStream) {
  const fs::path result = dir_ / "r.json", html = dir_ / "r.html";
  LoadRun timed = run_load(server_->port(), {"--duration", "1.5", "--concurrency", "4", "--ramp-up-seconds", "1",
                                             "--pool-size", "8", "--input-len", "8", "--output-len", "4",
                                             "--result-json", result.string()});
  ASSERT_EQ(timed.exit_code, 0) << timed.output;
  json r = json::parse(read_text(result));
  EXPECT_GT(r["completed"].get<int>(), 8);  // the pool of 8 prompts is cycled
  EXPECT_EQ(r["completed"].get<int>() + r["failed"].get<int>(), r["num_prompts"].get<int>());
  EXPECT_GE(r["duration"].get<double>(), 1.5);
  EXPECT_LE(r["max_concurrent_requests"].get<int>(), 4);

  LoadRun sweep = run_load(server_->port(), {"--sweep", "1,3", "--num-requests", "6", "--input-len", "8",
                                             "--output-len", "4", "--result-json", result.string(), "--html",
                                             html.string()});
  ASSERT_EQ(sweep.exit_code, 0) << sweep.output;
  r = json::parse(read_text(result));
  ASSERT_EQ(r["sweep"].size(), 2u);
  EXPECT_EQ(r["sweep"][0]["max_concurrency"], 1);
  EXPECT_EQ(r["sweep"][1]["max_concurrency"], 3);
  EXPECT_EQ(r["sweep"][1]["completed"], 6);
  EXPECT_NE(read_text(html).find("across the sweep"), std::string::npos);

  LoadRun whole = run_load(server_->port(), {"--no-stream", "--num-requests", "4", "--concurrency", "2",
                                             "--input-len", "8", "--output-len", "5", "--result-json", result.string()});
  ASSERT_EQ(whole.exit_code, 0) << whole.output;
  r = json::parse(read_text(result));
  EXPECT_EQ(r["completed"], 4);
  EXPECT_EQ(r["total_output_tokens"], 20);
  EXPECT_EQ(r["ttfts"][0], nullptr);  // not measured without streaming
  for (const char* metric : {"ttft", "tpot", "itl"}) {
    for (const char* stat : {"mean", "median", "std", "min", "max", "p50", "p90", "p95", "p99"}) {
      const std::string key = std::string(stat) + "_" + metric + "_ms";
      EXPECT_TRUE(r[key].is_null()) << key << " = " << r[key];
    }
  }
  EXPECT_GT(r["mean_e2el_ms"].get<double>(), 0.0);
}

// Requests dropped mid-stream are cancelled by the server and leave no KV pages behind.
TEST(LoadClientFaults, DisconnectLeavesNoPagesInUse) {
  std::string error;
  auto server = ServerProcess::start({"--model", hf_model_dir(), "--debug-step-delay-ms", "20"}, &error);
  ASSERT_NE(server, nullptr) << error;
  const fs::path result = fs::temp_directory_path() / ("kvmesh-load-drop-" + std::to_string(::getpid()) + ".json");
  LoadRun run = run_load(server->port(), {"--num-requests", "8", "--concurrency", "8", "--input-len", "16",
                                          "--output-len", "60", "--disconnect-fraction", "0.5",
                                          "--disconnect-after", "150", "--seed", "4", "--result-json",
                                          result.string()});
  ASSERT_EQ(run.exit_code, 0) << run.output;
  json r = json::parse(read_text(result));
  fs::remove(result);
  EXPECT_EQ(r["disconnected"], 4);
  EXPECT_EQ(r["completed"], 4);
  EXPECT_EQ(r["failed"], 0);
  EXPECT_EQ(r["total_output_tokens"], 4 * 60);
  EXPECT_TRUE(eventually([&] { return server->metric("kvmesh_kv_pages_used") == 0.0; }, 5000))
      << server->metrics();
  EXPECT_EQ(server->metric("kvmesh_num_requests_running"), 0.0);
  // The server stopped the dropped ones: only the 4 kept requests ran to their length.
  const json& counters = r["server_metrics"]["counters"];
  EXPECT_EQ(counters["kvmesh_request_success_total{finished_reason=\"length\"}"], 4.0) << counters.dump();
  EXPECT_LT(counters["kvmesh_generation_tokens_total"].get<double>(), 8 * 60) << counters.dump();
}

// With a known step delay, batch 1: what the client measures is bounded below by what the server
// certainly did (it sleeps the delay before every step), and agrees with the server's own record
// where the two see the same events: each request's TTFT starts on the client first. Upper bounds
// would be wall-clock speed on a shared machine; the arithmetic from chunk times to TTFT, ITL and
// TPOT is pinned exactly by load_math_test on given times.
TEST(LoadClientTiming, MatchesKnownStepDelay) {
  constexpr double kDelayMs = 50.0, kTolMs = 0.1 * kDelayMs;
  std::string error;
  auto server = ServerProcess::start({"--model", hf_model_dir(), "--debug-step-delay-ms", "50"}, &error);
  ASSERT_NE(server, nullptr) << error;
  const std::string tag = std::to_string(::getpid());
  const fs::path result = fs::temp_directory_path() / ("kvmesh-load-timing-" + tag + ".json");
  const fs::path requests = fs::temp_directory_path() / ("kvmesh-load-timing-" + tag + ".jsonl");
  LoadRun run = run_load(server->port(), {"--num-requests", "6", "--concurrency", "1", "--input-len", "16",
                                          "--output-len", "12", "--warmup", "1", "--result-json", result.string(),
                                          "--requests-jsonl", requests.string()});
  ASSERT_EQ(run.exit_code, 0) << run.output;
  json r = json::parse(read_text(result));
  const auto lines = read_jsonl(requests);
  fs::remove(result);
  fs::remove(requests);
  const auto& means = r["server_metrics"]["histogram_means"];
  const double server_itl = means["kvmesh_inter_token_latency_seconds"].get<double>() * 1e3;
  const double itl = r["median_itl_ms"];
  std::printf("median ITL %.2f ms (server mean %.2f ms)\n", itl, server_itl);
  EXPECT_GE(itl, kDelayMs - kTolMs);
  EXPECT_GE(server_itl, kDelayMs - kTolMs);
  // Every request has the same length: TPOT and ITL measure the same gaps (ITL from chunks, whose text
  // may wait for a whole UTF-8 character).
  EXPECT_NEAR(r["mean_tpot_ms"].get<double>(), r["mean_itl_ms"].get<double>(), kTolMs);

  std::map<std::string, double> server_ttft;  // from the server's request log
  std::istringstream log(server->stderr_text());
  for (std::string line; std::getline(log, line);) {
    json entry = json::parse(line, nullptr, false);
    if (entry.is_object() && entry.contains("ttft_ms") && entry["ttft_ms"].is_number()) {
      server_ttft[entry["id"].get<std::string>()] = entry["ttft_ms"].get<double>();
    }
  }
  std::vector<double> ttfts;
  for (const json& l : lines) {
    auto it = server_ttft.find(l["response_id"].get<std::string>());
    ASSERT_NE(it, server_ttft.end()) << l.dump();
    const double client = l["ttft_ms"].get<double>();
    std::printf("TTFT client %.2f ms, server %.2f ms\n", client, it->second);
    EXPECT_GE(client, it->second - 0.5);  // the client's clock starts first
    ttfts.push_back(client);
  }
  // At batch 1 the first token comes at least one step after the request arrives.
  EXPECT_GE(*std::min_element(ttfts.begin(), ttfts.end()), kDelayMs - kTolMs);
}

}  // namespace
}  // namespace kvmesh::testing
