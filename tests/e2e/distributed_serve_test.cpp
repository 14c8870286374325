// kvmesh-serve under mpirun at TP=2 x PP=2: 16 concurrent HTTP clients get exactly the results of
// a single process, and a rank that is killed or stops answering ends the whole job quickly, after
// every open request got its error (an SSE error event and [DONE], or a 503); a step that fails on
// one rank alone fails its request at once and the job serves on.
#include <gtest/gtest.h>

#include <dirent.h>
#include <stdlib.h>

#include <fstream>
#include <future>
#include <optional>
#include <tuple>
#include <thread>

#include "server_process.h"

namespace kvmesh::testing {
namespace {

nlohmann::json request_body(int i) {
  static const std::vector<int> prompt = {464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13};
  nlohmann::json body = {{"prompt", std::vector<int>(prompt.begin(), prompt.begin() + 1 + i % 10)},
                         {"max_tokens", 4 + (i * 7) % 20},
                         {"return_token_ids", true},
                         {"ignore_eos", true}};
  if (i % 3 == 0) {
    body["temperature"] = 0.8;
    body["top_k"] = 40;
    body["seed"] = 1000 + i;
  } else {
    body["temperature"] = 0;
  }
  if (i % 2 == 0) body["stream"] = true;
  return body;
}

std::vector<int> run_one(int port, int i) {
  nlohmann::json body = request_body(i);
  if (body.value("stream", false)) {
    StreamedResult r = stream_completion(port, "/v1/completions", body);
    return r.token_ids.empty() ? std::vector<int>{-1} : r.token_ids[0];
  }
  auto [status, json] = post_for_json(port, "/v1/completions", body);
  if (status != 200) return {-status};
  return json["choices"][0]["token_ids"].get<std::vector<int>>();
}

std::vector<std::vector<int>> run_concurrently(int port, int n) {
  std::vector<std::future<std::vector<int>>> futures;
  for (int i = 0; i < n; ++i) futures.push_back(std::async(std::launch::async, run_one, port, i));
  std::vector<std::vector<int>> out;
  for (auto& f : futures) out.push_back(f.get());
  return out;
}

// Pids of this job's kvmesh-serve ranks (found by the unique port on their command line).
std::vector<std::pair<pid_t, int>> rank_pids(const std::string& port_flag) {
  std::vector<std::pair<pid_t, int>> found;
  DIR* proc = ::opendir("/proc");
  if (!proc) return found;
  while (dirent* e = ::readdir(proc)) {
    const pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid <= 0) continue;
    std::ifstream cmd("/proc/" + std::string(e->d_name) + "/cmdline");
    std::string c((std::istreambuf_iterator<char>(cmd)), std::istreambuf_iterator<char>());
    if (c.find("kvmesh-serve") == std::string::npos || c.find(port_flag) == std::string::npos) continue;
    if (c.rfind("mpirun", 0) == 0) continue;
    std::ifstream env("/proc/" + std::string(e->d_name) + "/environ");
    std::string v((std::istreambuf_iterator<char>(env)), std::istreambuf_iterator<char>());
    const auto at = v.find("OMPI_COMM_WORLD_RANK=");
    if (at != std::string::npos) found.emplace_back(pid, std::atoi(v.c_str() + at + 21));
  }
  ::closedir(proc);
  return found;
}

TEST(DistributedServe, TwoByTwoMatchesOneProcessUnderConcurrentClients) {
  std::string error;
  auto single = ServerProcess::start({"--model", hf_model_dir()}, &error);
  ASSERT_NE(single, nullptr) << error;
  const auto expected = run_concurrently(single->port(), 16);
  single.reset();

  const std::string port = "19" + std::to_string(100 + ::getpid() % 800);
  auto grid = ServerProcess::start_mpi(
      4, {"--model", hf_model_dir(), "--tp", "2", "--pp", "2", "--port", port}, &error);
  ASSERT_NE(grid, nullptr) << error;
  const auto got = run_concurrently(grid->port(), 16);
  for (int i = 0; i < 16; ++i) {
    EXPECT_GT(expected[i].size(), 1u) << "request " << i;
    EXPECT_EQ(got[i], expected[i]) << "request " << i;
  }
  // A graceful stop goes to rank 0 (the leader drains, then releases the other ranks); every rank
  // exits 0, and so does mpirun.
  for (const auto& [pid, rank] : rank_pids(port))
    if (rank == 0) ::kill(pid, SIGTERM);
  EXPECT_EQ(grid->wait_exit(30000), std::optional<int>(0));
}

TEST(DistributedServe, KilledRankEndsTheJobWithinBound) {
  std::string error;
  const std::string port = "18" + std::to_string(100 + ::getpid() % 800);
  auto grid = ServerProcess::start_mpi(
      4, {"--model", hf_model_dir(), "--tp", "2", "--pp", "2", "--port", port, "--debug-step-delay-ms", "20"},
      &error);
  ASSERT_NE(grid, nullptr) << error;
  const auto ranks = rank_pids(port);
  ASSERT_EQ(ranks.size(), 4u);
  auto stream = std::async(std::launch::async, [&] {
    nlohmann::json body = {{"prompt", {464, 2068}}, {"max_tokens", 400}, {"stream", true},
                           {"ignore_eos", true}, {"temperature", 0}};
    return stream_completion(grid->port(), "/v1/completions", body, {}, 30000);
  });
  // The stream is under way: its first tokens are out.
  ASSERT_TRUE(eventually([&] { return grid->metric("kvmesh_generation_tokens_total") >= 2.0; }, 20000))
      << grid->metrics();
  for (const auto& [pid, rank] : ranks)
    if (rank == 1) ::kill(pid, SIGKILL);
  const auto started = std::chrono::steady_clock::now();
  // The job ends (non-zero) and the client's stream ends without [DONE], within the stated bound.
  const auto code = grid->wait_exit(60000);
  ASSERT_TRUE(code.has_value()) << "mpirun still running 60 s after a rank was killed";
  EXPECT_NE(*code, 0);
  const StreamedResult r = stream.get();
  EXPECT_FALSE(r.done && r.error_events.empty()) << "a stream that lost a rank must not end cleanly";
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(60));
  EXPECT_TRUE(eventually([&] { return rank_pids(port).empty(); }, 5000)) << "ranks left running";
}

// What the clients of a job saw when one of its ranks got `sig`, timed from the signal.
struct LostRank {
  StreamedResult stream;
  int plain_status = 0;
  nlohmann::json plain;
  int late_status = 0;  // a request sent just after the signal (queued behind the stuck step)
  nlohmann::json late;
  double stream_s = -1, plain_s = -1, exit_s = -1;
  std::optional<int> exit_code;
};

// drain_first: rank 0 is draining (SIGTERM) when the rank is lost.
LostRank lose_rank(int n_ranks, std::vector<std::string> args, int victim, int sig, bool drain_first = false) {
  using Clock = std::chrono::steady_clock;
  LostRank out;
  std::string error;
  const std::string port = std::to_string(17100 + (::getpid() + sig + victim * 100 + (drain_first ? 40 : 0)) % 800);
  args.insert(args.end(), {"--model", hf_model_dir(), "--port", port, "--step-timeout", "3",
                           "--debug-step-delay-ms", "20"});
  auto grid = ServerProcess::start_mpi(n_ranks, args, &error);
  EXPECT_NE(grid, nullptr) << error;
  if (grid == nullptr) return out;
  pid_t victim_pid = -1, leader_pid = -1;
  for (const auto& [pid, rank] : rank_pids(port)) {
    if (rank == victim) victim_pid = pid;
    if (rank == 0) leader_pid = pid;
  }
  EXPECT_GT(victim_pid, 0);
  Clock::time_point signalled;
  auto seconds_since = [&signalled] { return std::chrono::duration<double>(Clock::now() - signalled).count(); };
  nlohmann::json body = {{"prompt", {464, 2068}}, {"max_tokens", 500}, {"ignore_eos", true}, {"temperature", 0}};
  auto plain = std::async(std::launch::async, [&, body] {
    auto reply = post_for_json(grid->port(), "/v1/completions", body);
    out.plain_s = seconds_since();
    return reply;
  });
  nlohmann::json streamed = body;
  streamed["stream"] = true;
  auto stream = std::async(std::launch::async, [&] {
    StreamedResult r = stream_completion(grid->port(), "/v1/completions", streamed, {}, 30000);
    out.stream_s = seconds_since();
    return r;
  });
  EXPECT_TRUE(eventually([&] { return grid->metric("kvmesh_num_requests_running") == 2.0; }, 20000))
      << "both requests should be running before the rank is lost";
  if (drain_first) {
    ::kill(leader_pid, SIGTERM);
    EXPECT_TRUE(eventually([&] { return http_request(grid->port(), "GET", "/ready").status == 503; }, 10000))
        << "rank 0 should be draining";
  }
  signalled = Clock::now();
  ::kill(victim_pid, sig);
  auto late = std::async(std::launch::async, [&, body] { return post_for_json(grid->port(), "/v1/completions", body); });
  out.stream = stream.get();
  std::tie(out.late_status, out.late) = late.get();
  std::tie(out.plain_status, out.plain) = plain.get();
  out.exit_code = grid->wait_exit(30000);
  out.exit_s = seconds_since();
  ::kill(victim_pid, SIGCONT);  // nothing stays behind, stopped or not
  ::kill(victim_pid, SIGKILL);
  EXPECT_TRUE(eventually([&] { return rank_pids(port).empty(); }, 5000)) << "ranks left running";
  std::fprintf(stderr, "signal %d to rank %d: stream error after %.2f s, 503 after %.2f s, job exit after %.2f s\n",
               sig, victim, out.stream_s, out.plain_s, out.exit_s);
  return out;
}

// Both clients get the error that names the cause, within the step timeout (3 s) plus a margin.
void expect_told(const LostRank& r, const std::string& cause) {
  ASSERT_EQ(r.stream.status, 200) << r.stream.error;
  ASSERT_EQ(r.stream.error_events.size(), 1u) << "the stream ends with one error event";
  const nlohmann::json& event = r.stream.error_events[0]["error"];
  EXPECT_EQ(event["type"], "service_unavailable");
  EXPECT_NE(event["message"].get<std::string>().find(cause), std::string::npos) << event;
  EXPECT_TRUE(r.stream.done) << "[DONE] follows the error event";
  EXPECT_EQ(r.plain_status, 503) << r.plain;
  EXPECT_NE(r.plain["error"]["message"].get<std::string>().find(cause), std::string::npos) << r.plain;
  EXPECT_EQ(r.late_status, 503) << r.late;
  EXPECT_LT(r.stream_s, 3 + 10);
  EXPECT_LT(r.plain_s, 3 + 10);
  ASSERT_TRUE(r.exit_code.has_value()) << "the job must end";
  EXPECT_NE(*r.exit_code, 0);
}

TEST(DistributedServe, StoppedRankFailsEveryRequestThenEndsTheJob) {
  const LostRank r = lose_rank(4, {"--tp", "2", "--pp", "2"}, 1, SIGSTOP);
  expect_told(r, "a rank stopped answering");
  EXPECT_EQ(r.exit_code, std::optional<int>(3));
}

// The last stage stops: rank 0 is not in a collective with it, and its wait for the step's result
// runs out instead.
TEST(DistributedServe, StoppedLastStageFailsEveryRequestThenEndsTheJob) {
  const LostRank r = lose_rank(4, {"--tp", "2", "--pp", "2"}, 3, SIGSTOP);
  expect_told(r, "a rank stopped answering");
  EXPECT_EQ(r.exit_code, std::optional<int>(3));
}

TEST(DistributedServe, RankStoppedWhileDrainingFailsEveryRequestThenEndsTheJob) {
  const LostRank r = lose_rank(2, {"--tp", "2"}, 1, SIGSTOP, true);
  expect_told(r, "a rank stopped answering");
  EXPECT_EQ(r.exit_code, std::optional<int>(3));
}

TEST(DistributedServe, KilledRankFailsEveryRequestBeforeTheJobEnds) {
  const LostRank r = lose_rank(2, {"--tp", "2"}, 1, SIGKILL);
  expect_told(r, "mpirun stopped it");
}

// A step that fails on one rank alone (told to, once) ends that step's request with the rank's
// error at once, not after --step-timeout; the ranks stay in step and the job serves on.
void expect_failed_step_then_served(int failing_rank) {
  std::string error;
  const std::string port = std::to_string((15 - failing_rank) * 1000 + 100 + ::getpid() % 800);
  ::setenv("KVMESH_DEBUG_FAIL_STEP_RANK", std::to_string(failing_rank).c_str(), 1);  // mpirun passes it on
  auto grid = ServerProcess::start_mpi(
      2, {"--model", hf_model_dir(), "--pp", "2", "--port", port, "--step-timeout", "60"}, &error);
  ::unsetenv("KVMESH_DEBUG_FAIL_STEP_RANK");
  ASSERT_NE(grid, nullptr) << error;
  const nlohmann::json body = {{"prompt", {464, 2068}}, {"max_tokens", 4}, {"temperature", 0}};
  const auto started = std::chrono::steady_clock::now();
  auto [status, failed] = post_for_json(grid->port(), "/v1/completions", body);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_EQ(status, 500) << failed;
  EXPECT_NE(failed.dump().find("the step failed on purpose"), std::string::npos) << failed;
  EXPECT_LT(seconds, 30) << "rank 0 waited for the step timeout (60 s)";
  std::fprintf(stderr, "rank %d's failed step reached the client after %.2f s\n", failing_rank, seconds);
  for (int i = 0; i < 2; ++i) {  // the next steps get their own results
    auto [status2, ok] = post_for_json(grid->port(), "/v1/completions", body);
    EXPECT_EQ(status2, 200) << ok;
  }
  for (const auto& [pid, rank] : rank_pids(port))
    if (rank == 0) ::kill(pid, SIGTERM);
  EXPECT_EQ(grid->wait_exit(30000), std::optional<int>(0));
}

TEST(DistributedServe, StepFailedOnTheSamplingRankFailsItsRequestAndTheJobServesOn) {
  expect_failed_step_then_served(1);  // PP 2: rank 1 is the last stage, which samples
}

TEST(DistributedServe, StepFailedOnRankZeroAloneLeavesNoStaleResult) {
  expect_failed_step_then_served(0);
}

}  // namespace
}  // namespace kvmesh::testing
