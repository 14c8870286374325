// Multi-host runs on one machine: two network namespaces joined by a veth pair act as two hosts;
// deploy/launch.sh starts mpirun in the first, ranks reach the second through an rsh agent, and a
// TP=2 x PP=2 kvmesh-generate (TP inside a host, PP across, MPI over TCP) must match one process.
// Also: launch.sh's SIGTERM drain through rank 0 and its exit codes, on this host.
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

// The launch.sh command line run inside the first namespace (the head node).
std::string netns_launch(const NetnsHosts& hosts, const std::string& hostfile, const std::string& rest) {
  return "env " + kRootEnv + " " + hosts.agent_env() + " KVMESH_FAKE_MARK=forwarded ip netns exec " +
         hosts.ns_a() + " bash " + kLaunch + " --hostfile " + hostfile + " --tp 2 --pp 2 --iface kvmesh0" +
         " --mca plm_rsh_agent " + kNetns + "/rsh_agent.sh --mca btl tcp,self " + rest;
}

// One request holding the fixture's prompts: greedy, with the top-2 log-probs of every token.
std::string request_json() {
  nlohmann::json prompts = nlohmann::json::array();
  const nlohmann::json golden = load_json_file(hf_fixture_dir() + "/golden.json");
  for (const auto& c : golden["cases"]) prompts.push_back(c["prompt"]);
  return nlohmann::json{{"prompt", prompts}, {"max_tokens", 12},       {"temperature", 0},
                        {"logprobs", 2},     {"return_token_ids", true}, {"ignore_eos", true}}
      .dump();
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

TEST(MultiHostNetns, TpInsideHostsPpAcrossHostsMatchesOneProcess) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to create network namespaces (ip netns add)";
  NetnsHosts hosts;
  if (!hosts.skip_reason().empty()) GTEST_SKIP() << hosts.skip_reason();
  ASSERT_TRUE(hosts.error().empty()) << hosts.error();
  const std::string dir = make_temp_dir("netns");
  const std::string hostfile = dir + "/hostfile";
  write_file(hostfile, "# two namespaces as two hosts\n10.211.0.1 slots=2\n10.211.0.2 slots=2\n");

  // Placement: ranks 0,1 (TP group of stage 0) on the first host, 2,3 on the second; one GPU index
  // per local rank; KVMESH_* variables reach the remote host.
  CommandResult place = run_command(netns_launch(hosts, hostfile, "--bin " + kNetns + "/fake_rank.sh --mode place"), 60);
  ASSERT_EQ(place.exit_code, 0) << place.err;
  for (int r = 0; r < 4; ++r) {
    const std::string ns = r < 2 ? hosts.ns_a() : hosts.ns_b();
    const std::string line = "rank=" + std::to_string(r) + " local=" + std::to_string(r % 2) + " netns=" + ns +
                             " gpu=" + std::to_string(r % 2) + " env=forwarded";
    EXPECT_NE(place.out.find(line), std::string::npos) << "missing '" << line << "' in\n" << place.out;
  }

  // The same request on one process and on the 2 x 2 grid across the two hosts.
  write_file(dir + "/request.json", request_json());
  const std::string args = " --model " + hf_fixture_dir() + " --threads 1 --request @" + dir + "/request.json";
  CommandResult single = run_command(kGenerate + args, 60);
  ASSERT_EQ(single.exit_code, 0) << single.err;
  CommandResult grid = run_command(netns_launch(hosts, hostfile, "--no-gpu-binding --bin " + kGenerate + args), 60);
  ASSERT_EQ(grid.exit_code, 0) << grid.err;
  expect_same_choices(nlohmann::json::parse(single.out), nlohmann::json::parse(grid.out));

  // A failure on every rank (an unreadable model) ends the whole job with a non-zero status and
  // one message, instead of hanging.
  CommandResult bad = run_command(
      netns_launch(hosts, hostfile, "--no-gpu-binding --bin " + kGenerate + " --model " + dir + "/missing --request @" +
                                        dir + "/request.json"),
      60);
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.exit_code, 124) << "timed out";
  EXPECT_NE(bad.err.find("kvmesh-generate:"), std::string::npos) << bad.err;
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
