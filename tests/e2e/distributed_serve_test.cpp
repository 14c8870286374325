// kvmesh-serve under mpirun at TP=2 x PP=2: 16 concurrent HTTP clients get exactly the results of
// a single process, and a rank killed with SIGKILL ends the whole job quickly instead of hanging.
#include <gtest/gtest.h>

#include <dirent.h>

#include <fstream>
#include <future>
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
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // the stream is under way
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
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_TRUE(rank_pids(port).empty()) << "ranks left running";
}

}  // namespace
}  // namespace kvmesh::testing
