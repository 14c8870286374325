// Multi-host runs on one machine: two network namespaces joined by a veth pair act as two hosts;
// deploy/launch.sh starts mpirun in the first, ranks reach the second through an rsh agent, and
// kvmesh-serve at TP=2 x PP=2 (TP inside a host, PP across, MPI over TCP) answers HTTP requests
// from inside the first namespace exactly as one process does, then drains on SIGTERM. Failures
// (a rank that cannot start, a lost or unreachable host) end the job. Also, on this host alone:
// launch.sh's SIGTERM drain through rank 0 and its exit codes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "command_runner.h"
#include "engine_fixture.h"

namespace kvmesh::testing {
namespace {

namespace fs = std::filesystem;

const std::string kSource = fs::path(KVMESH_TEST_DATA_DIR).parent_path().parent_path().string();
const std::string kLaunch = kSource + "/deploy/launch.sh";
const std::string kNetns = kSource + "/tests/netns";
const std::string kGenerate = KVMESH_BIN_DIR "/tools/kvmesh-generate";
const std::string kServe = KVMESH_BIN_DIR "/coordinator/kvmesh-serve";
const std::string kRootEnv = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1";

std::string make_temp_dir(const std::string& tag) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("kvmesh_" + tag + "_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

void write_file(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// Two namespaces "<prefix>a" and "<prefix>b" for the life of the object (removed on every exit
// path, failed assertions included). skip_reason is set when this machine forbids namespaces.
class NetnsHosts {
 public:
  NetnsHosts() : prefix_("kvmesh_nt" + std::to_string(getpid()) + "_") {
    remove_stale();
    CommandResult r = run_command("bash " + kNetns + "/hosts.sh up " + ns_a() + " " + ns_b(), 30);
    if (r.exit_code == 77) skip_reason_ = "network namespaces are not permitted here: " + r.err;
    else if (r.exit_code != 0) error_ = "hosts.sh up failed (" + std::to_string(r.exit_code) + "): " + r.err;
    else up_ = true;
  }
  ~NetnsHosts() {
    if (up_) run_command("bash " + kNetns + "/hosts.sh down " + ns_a() + " " + ns_b(), 30);
  }
  NetnsHosts(const NetnsHosts&) = delete;
  NetnsHosts& operator=(const NetnsHosts&) = delete;

  std::string ns_a() const { return prefix_ + "a"; }
  std::string ns_b() const { return prefix_ + "b"; }
  const std::string& skip_reason() const { return skip_reason_; }
  const std::string& error() const { return error_; }
  // The agent's host -> namespace map, for the environment of mpirun.
  std::string agent_env() const {
    return "KVMESH_NETNS_HOSTS=10.211.0.1=" + ns_a() + ",10.211.0.2=" + ns_b();
  }

 private:
  // Namespaces left by an earlier run of this test that was killed (its pid is gone).
  static void remove_stale() {
    CommandResult r = run_command("ip netns list", 10);
    std::istringstream lines(r.out);
    std::string name;
    while (lines >> name) {
      if (name.rfind("kvmesh_nt", 0) != 0) continue;
      const std::string pid = name.substr(9, name.find('_', 9) - 9);
      if (pid.empty() || fs::exists("/proc/" + pid)) continue;
      run_command("ip netns delete " + name, 10);
    }
  }

  std::string prefix_;
  std::string skip_reason_, error_;
  bool up_ = false;
};

// The environment mpirun needs here: root allowed, the agent's host map, one variable to forward.
std::string launch_env(const NetnsHosts& hosts) {
  return "env " + kRootEnv + " " + hosts.agent_env() + " KVMESH_FAKE_MARK=forwarded ";
}

// launch.sh for the two "hosts": TP=2 in each, PP=2 across, MPI over TCP on kvmesh0 only.
std::string launch_args(const std::string& hostfile, const std::string& rest) {
  return "bash " + kLaunch + " --hostfile " + hostfile + " --tp 2 --pp 2 --iface kvmesh0 --mca plm_rsh_agent " +
         kNetns + "/rsh_agent.sh --mca btl tcp,self " + rest;
}

// The launch.sh command line run inside the first namespace (the head node).
std::string netns_launch(const NetnsHosts& hosts, const std::string& hostfile, const std::string& rest) {
  return launch_env(hosts) + "ip netns exec " + hosts.ns_a() + " " + launch_args(hostfile, rest);
}

// Request 0: the fixture's prompts, greedy, with the top-2 log-probs of every token. Request 1: a
// seeded sample (reproducible for any layout: the draw depends on the seed and position only).
std::vector<std::string> requests_json() {
  nlohmann::json prompts = nlohmann::json::array();
  const nlohmann::json golden = load_json_file(hf_fixture_dir() + "/golden.json");
  for (const auto& c : golden["cases"]) prompts.push_back(c["prompt"]);
  const nlohmann::json greedy = {{"prompt", prompts}, {"max_tokens", 12},       {"temperature", 0},
                                 {"logprobs", 2},     {"return_token_ids", true}, {"ignore_eos", true}};
  const nlohmann::json sampled = {{"prompt", {464, 2068, 7586}}, {"max_tokens", 16}, {"temperature", 0.8},
                                  {"top_k", 40},                 {"seed", 7},         {"return_token_ids", true},
                                  {"ignore_eos", true}};
  return {greedy.dump(), sampled.dump()};
}

// Tokens equal and log-probs within 1e-4 of the single-process run, up to a near-tie (top-2 gap
// under 1e-3 in the reference), after which TP's different summation order may pick the other.
void expect_same_choices(const nlohmann::json& ref, const nlohmann::json& got) {
  ASSERT_EQ(got["choices"].size(), ref["choices"].size());
  for (size_t i = 0; i < ref["choices"].size(); ++i) {
    const auto& a = ref["choices"][i];
    const auto& b = got["choices"][i];
    const auto ta = a["token_ids"].get<std::vector<int>>(), tb = b["token_ids"].get<std::vector<int>>();
    ASSERT_EQ(ta.size(), tb.size()) << "choice " << i;
    for (size_t k = 0; k < ta.size(); ++k) {
      std::vector<double> top;
      for (const auto& [tok, lp] : a["logprobs"]["top_logprobs"][k].items()) top.push_back(lp.get<double>());
      std::sort(top.rbegin(), top.rend());
      const bool near_tie = top.size() >= 2 && top[0] - top[1] < 1e-3;
      if (ta[k] != tb[k]) {
        EXPECT_TRUE(near_tie) << "choice " << i << " token " << k << ": " << ta[k] << " vs " << tb[k];
        break;
      }
      EXPECT_NEAR(a["logprobs"]["token_logprobs"][k].get<double>(), b["logprobs"]["token_logprobs"][k].get<double>(),
                  1e-4)
          << "choice " << i << " token " << k;
    }
  }
}

// Ranks 0,1 (the TP group of stage 0) run on the first host, 2,3 on the second; each gets the GPU
// index of its local rank; KVMESH_* variables reach the remote host.
void expect_placement(const NetnsHosts& hosts, const std::string& hostfile) {
  CommandResult place = run_command(netns_launch(hosts, hostfile, "--bin " + kNetns + "/fake_rank.sh --mode place"), 60);
  ASSERT_EQ(place.exit_code, 0) << place.err;
  for (int r = 0; r < 4; ++r) {
    const std::string ns = r < 2 ? hosts.ns_a() : hosts.ns_b();
    const std::string line = "rank=" + std::to_string(r) + " local=" + std::to_string(r % 2) + " netns=" + ns +
                             " gpu=" + std::to_string(r % 2) + " env=forwarded";
    EXPECT_NE(place.out.find(line), std::string::npos) << "missing '" << line << "' in\n" << place.out;
  }
}

TEST(MultiHostNetns, TpInsideHostsPpAcrossHostsServesLikeOneProcess) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to create network namespaces (ip netns add)";
  NetnsHosts hosts;
  if (!hosts.skip_reason().empty()) GTEST_SKIP() << hosts.skip_reason();
  ASSERT_TRUE(hosts.error().empty()) << hosts.error();
  const std::string dir = make_temp_dir("netns");
  const std::string hostfile = dir + "/hostfile";
  write_file(hostfile, "# two namespaces as two hosts\n10.211.0.1 slots=2\n10.211.0.2 slots=2\n");

  expect_placement(hosts, hostfile);

  // kvmesh-serve on the 2 x 2 grid; requests and SIGTERM come from inside the first namespace.
  const std::vector<std::string> requests = requests_json();
  std::string request_files;
  for (size_t i = 0; i < requests.size(); ++i) {
    write_file(dir + "/request." + std::to_string(i) + ".json", requests[i]);
    request_files += " " + dir + "/request." + std::to_string(i) + ".json";
  }
  const std::string serve = launch_args(hostfile, "--no-gpu-binding --bin " + kServe + " -- --model " +
                                                      hf_fixture_dir() + " --threads 1 --host 127.0.0.1 --port 8000");
  CommandResult served = run_command(launch_env(hosts) + "bash " + kNetns + "/serve_check.sh " + hosts.ns_a() +
                                         " 8000 " + dir + request_files + " -- " + serve,
                                     80);
  ASSERT_NE(served.out.find("request 0: HTTP 200"), std::string::npos) << served.out << served.err;
  ASSERT_NE(served.out.find("request 1: HTTP 200"), std::string::npos) << served.out << served.err;
  EXPECT_NE(served.out.find("rc=0"), std::string::npos) << "no clean drain:\n" << served.out << served.err;
  EXPECT_NE(served.err.find("launch.sh: stop requested: rank 0"), std::string::npos) << served.err;
  EXPECT_NE(served.err.find("kvmesh-serve: stopped"), std::string::npos) << served.err;

  // The same requests on one process.
  for (size_t i = 0; i < requests.size(); ++i) {
    const std::string index = std::to_string(i);
    CommandResult single = run_command(kGenerate + " --model " + hf_fixture_dir() + " --threads 1 --request @" + dir +
                                           "/request." + index + ".json",
                                       60);
    ASSERT_EQ(single.exit_code, 0) << single.err;
    const nlohmann::json ref = nlohmann::json::parse(single.out);
    const nlohmann::json got = load_json_file(dir + "/response." + index + ".json");
    if (i == 0) {
      expect_same_choices(ref, got);
    } else {
      EXPECT_EQ(got["choices"][0]["token_ids"], ref["choices"][0]["token_ids"]) << "seeded sample";
    }
  }
}

// A rank that cannot start (an unreadable model on every rank) ends the whole job with a non-zero
// status and rank 0's message, instead of hanging.
TEST(MultiHostNetns, RankThatCannotStartEndsTheJob) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to create network namespaces (ip netns add)";
  NetnsHosts hosts;
  if (!hosts.skip_reason().empty()) GTEST_SKIP() << hosts.skip_reason();
  ASSERT_TRUE(hosts.error().empty()) << hosts.error();
  const std::string dir = make_temp_dir("netns_bad");
  write_file(dir + "/hostfile", "10.211.0.1 slots=2\n10.211.0.2 slots=2\n");
  CommandResult bad = run_command(
      netns_launch(hosts, dir + "/hostfile", "--no-gpu-binding --bin " + kServe + " -- --model " + dir + "/missing"), 60);
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.exit_code, 124) << "timed out";
  EXPECT_NE(bad.err.find("kvmesh-serve: error:"), std::string::npos) << bad.err;
}

// A host lost while serving (its Open MPI daemon killed) or unreachable at start ends the whole
// job with a non-zero status, and the surviving host's ranks are stopped.
TEST(MultiHostNetns, LostOrUnreachableHostEndsTheJob) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to create network namespaces (ip netns add)";
  NetnsHosts hosts;
  if (!hosts.skip_reason().empty()) GTEST_SKIP() << hosts.skip_reason();
  ASSERT_TRUE(hosts.error().empty()) << hosts.error();
  const std::string dir = make_temp_dir("netns_lost");
  write_file(dir + "/hostfile", "10.211.0.1 slots=2\n10.211.0.2 slots=2\n");
  const std::string serve = netns_launch(hosts, dir + "/hostfile",
                                         "--no-gpu-binding --bin " + kNetns + "/fake_rank.sh --mode serve --dir " + dir);
  // Start, wait (bounded) for all four ranks, kill the daemon in the second namespace, report.
  write_file(dir + "/drive.sh",
             serve + " &\npid=$!\nfor _ in $(seq 1 200); do [ \"$(ls " + dir +
                 "/started.* 2>/dev/null | wc -l)\" -ge 4 ] && break; sleep 0.1; done\n" +
                 "for p in $(pgrep -x orted); do [ \"$(ip netns identify \"$p\")\" = " + hosts.ns_b() +
                 " ] && kill -KILL \"$p\"; done\nwait $pid\necho \"rc=$?\"\n");
  CommandResult lost = run_command("bash " + dir + "/drive.sh", 60);
  const size_t at = lost.out.rfind("rc=");
  ASSERT_NE(at, std::string::npos) << lost.out << lost.err;
  const int rc = std::stoi(lost.out.substr(at + 3));
  EXPECT_NE(rc, 0) << lost.err;
  EXPECT_NE(rc, 124) << "timed out: " << lost.err;
  EXPECT_NE(lost.err.find("lost communication with a remote daemon"), std::string::npos) << lost.err;
  // mpirun stops the ranks on the host that is still there (those of the lost host go with its
  // daemon: real ranks lose their PMIx server; fake_rank.sh exits when its parent is gone).
  CommandResult left = run_command("bash -c " + shell_quote("for p in $(pgrep -f '[f]ake_rank.sh --mode serve --dir " +
                                                            dir + "'); do ip netns identify $p; done"),
                                   10);
  EXPECT_EQ(left.out.find(hosts.ns_a()), std::string::npos) << "a rank outlived its job: " << left.out;

  write_file(dir + "/hostfile2", "10.211.0.1 slots=2\n10.211.0.9 slots=2\n");  // no such host
  CommandResult unreachable = run_command(netns_launch(hosts, dir + "/hostfile2", "--no-gpu-binding --bin /bin/true"), 60);
  EXPECT_NE(unreachable.exit_code, 0);
  EXPECT_NE(unreachable.exit_code, 124) << "timed out";
}

// Runs launch.sh on this host (hostfile "localhost slots=2") with fake ranks in serve mode.
std::string local_launch(const std::string& dir, const std::string& layout, const std::string& extra) {
  write_file(dir + "/hostfile", "localhost slots=2\n");
  return "env " + kRootEnv + " bash " + kLaunch + " --hostfile " + dir + "/hostfile " + layout +
         " --no-gpu-binding --bin " + kNetns + "/fake_rank.sh --mode serve --dir " + dir + extra;
}

TEST(LaunchScript, SigtermDrainsThroughRankZeroAndExitsZero) {
  const std::string dir = make_temp_dir("drain");
  // Start, wait (bounded) until both ranks run, SIGTERM launch.sh like a supervisor, report its status.
  write_file(dir + "/drive.sh", local_launch(dir, "--tp 2 --pp 1", "") + " &\npid=$!\n" +
                                    "for _ in $(seq 1 200); do [ -e " + dir + "/started.0 ] && [ -e " + dir +
                                    "/started.1 ] && break; sleep 0.1; done\n" +
                                    "kill -TERM $pid\nwait $pid\necho \"rc=$?\"\n");
  CommandResult r = run_command("bash " + dir + "/drive.sh", 60);
  EXPECT_NE(r.out.find("rc=0"), std::string::npos) << r.out << r.err;
  EXPECT_TRUE(fs::exists(dir + "/stop")) << "rank 0 did not drain";
  EXPECT_FALSE(fs::exists(dir + "/term.1")) << "a worker rank got SIGTERM: it must stop when rank 0 says";
  EXPECT_NE(r.err.find("rank 0 (pid"), std::string::npos) << r.err;
}

TEST(LaunchScript, FailingRankExitCodeIsTheJobsExitCode) {
  const std::string dir = make_temp_dir("fail");
  CommandResult r = run_command(local_launch(dir, "--tp 1 --pp 2", " --fail-rank 1 --fail-code 3"), 60);
  EXPECT_EQ(r.exit_code, 3) << r.err;
}

}  // namespace
}  // namespace kvmesh::testing
