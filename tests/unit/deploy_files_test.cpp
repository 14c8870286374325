// The deploy/ files are valid and say what the docs say: scripts pass bash -n and shellcheck, the
// YAML parses (python3-yaml) with the probes and policies serving needs, every path they copy,
// install or name exists, the systemd stop outlasts the drain, launch.sh builds the documented
// mpirun line and rejects bad layouts, and the Slurm script checks its task counts and calls
// srun --mpi=pmix. Nothing here starts MPI.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "command_runner.h"

namespace kvmesh::testing {
namespace {

namespace fs = std::filesystem;

const std::string kSource = fs::path(KVMESH_TEST_DATA_DIR).parent_path().parent_path().string();
const std::string kLaunch = "bash " + kSource + "/deploy/launch.sh";

std::vector<std::string> shell_scripts() {
  std::vector<std::string> out = {kSource + "/deploy/slurm/kvmesh.sbatch", kSource + "/.ci/run"};
  for (const char* dir : {"/deploy", "/tests/netns"}) {
    for (const auto& e : fs::directory_iterator(kSource + dir)) {
      if (e.path().extension() == ".sh") out.push_back(e.path().string());
    }
  }
  return out;
}

std::string temp_dir(const std::string& tag) {
  const fs::path d = fs::path(::testing::TempDir()) / ("kvmesh_deploy_" + tag + "_" + std::to_string(getpid()));
  fs::create_directories(d);
  return d.string();
}

void write_file(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST(DeployFiles, ShellScriptsParse) {
  for (const std::string& script : shell_scripts()) {
    CommandResult r = run_command("bash -n " + shell_quote(script), 30);
    EXPECT_EQ(r.exit_code, 0) << script << ": " << r.err;
  }
}

TEST(DeployFiles, ShellScriptsAreShellcheckClean) {
  if (run_command("shellcheck --version", 10).exit_code != 0) {
    GTEST_SKIP() << "shellcheck is not installed (deploy/install_deps.sh installs it)";
  }
  for (const std::string& script : shell_scripts()) {
    CommandResult r = run_command("shellcheck " + shell_quote(script), 60);
    EXPECT_EQ(r.exit_code, 0) << script << ":\n" << r.out << r.err;
  }
}

// Loads every YAML file with PyYAML and checks the fields docs/cluster.md promises. Only rank 0 serves
// HTTP (/metrics too): Prometheus must find exactly the pods it runs in, and no other.
constexpr const char* kYamlCheck = R"PY(
import os, re, sys, yaml
root = sys.argv[1]
def load(name):
    with open(root + "/" + name) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]
for d, _, files in os.walk(root):
    for f in files:
        if f.endswith((".yaml", ".yml")):
            load(os.path.relpath(os.path.join(d, f), root))
def scraped(meta):
    return (meta or {}).get("annotations", {}).get("prometheus.io/scrape") == "true"
lws, svc = load("k8s/leaderworkerset.yaml")
assert lws["kind"] == "LeaderWorkerSet" and lws["apiVersion"].startswith("leaderworkerset.x-k8s.io/")
t = lws["spec"]["leaderWorkerTemplate"]
assert t["restartPolicy"] == "RecreateGroupOnPodRestart", t["restartPolicy"]
leader = t["leaderTemplate"]["spec"]
c = leader["containers"][0]
assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
assert c["livenessProbe"]["httpGet"]["path"] == "/health"
drain = int(re.search(r"--drain-timeout (\d+)", c["args"][0]).group(1))
assert leader["terminationGracePeriodSeconds"] > drain, "grace period must outlast the drain"
assert "launch.sh" in c["args"][0] and "--pp \"$LWS_GROUP_SIZE\"" in c["args"][0]
assert t["workerTemplate"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 8
assert svc["kind"] == "Service" and svc["spec"]["selector"]["role"] == "leader"
assert scraped(t["leaderTemplate"]["metadata"]) and not scraped(t["workerTemplate"]["metadata"])
job, job_svc = load("k8s/mpijob.yaml")
assert job["kind"] == "MPIJob" and job["apiVersion"] == "kubeflow.org/v2beta1"
specs = job["spec"]["mpiReplicaSpecs"]
assert set(specs) == {"Launcher", "Worker"}
cmd = specs["Launcher"]["template"]["spec"]["containers"][0]["command"]
assert cmd[0].endswith("launch.sh") and "/etc/mpi/hostfile" in cmd
assert job_svc["kind"] == "Service"
# Every worker pod shares one template but only worker 0 holds rank 0: the Service in front of it
# is what Prometheus scrapes (endpoints discovery), not the pods.
assert not any(scraped(s["template"].get("metadata")) for s in specs.values()), "workers 1.. have no /metrics"
sel = job_svc["spec"]["selector"]
assert sel["training.kubeflow.org/job-role"] == "worker" and sel["training.kubeflow.org/replica-index"] == "0"
assert scraped(job_svc["metadata"]) and not scraped(svc["metadata"])
(prom,) = load("prometheus/prometheus.yml")
assert all(s["metrics_path"] == "/metrics" for s in prom["scrape_configs"])
def keeps(job, label):
    return any(r.get("action") == "keep" and label in r["source_labels"] and r["regex"] == "true"
               for r in job.get("relabel_configs", []))
roles = {s["kubernetes_sd_configs"][0]["role"]: s for s in prom["scrape_configs"] if "kubernetes_sd_configs" in s}
assert keeps(roles["pod"], "__meta_kubernetes_pod_annotation_prometheus_io_scrape")
assert keeps(roles["endpoints"], "__meta_kubernetes_service_annotation_prometheus_io_scrape")
print("yaml ok")
)PY";

std::string python3() { return fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3"; }

TEST(DeployFiles, YamlParsesAndKeepsServingPolicies) {
  CommandResult probe = run_command(python3() + " -c 'import yaml'", 30);
  ASSERT_EQ(probe.exit_code, 0) << "python3 with PyYAML is needed (Debian python3-yaml, from deploy/install_deps.sh): "
                                << probe.err;
  CommandResult r = run_command(python3() + " -c " + shell_quote(kYamlCheck) + " " + kSource + "/deploy", 30);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(has(r.out, "yaml ok")) << r.out;
}

// Dockerfile COPY sources, what its build stage reads (CMake's folders and includes, RUN lines'
// files), the /opt/kvmesh paths the unit, manifests and scripts use, and every repository path a
// deploy file names: all exist (tests/unit/deploy_paths_check.py says which do not).
TEST(DeployFiles, EveryPathTheyCopyInstallOrNameExists) {
  CommandResult r = run_command(python3() + " " + shell_quote(kSource + "/tests/unit/deploy_paths_check.py") + " " +
                                    shell_quote(kSource), 60);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(has(r.out, "paths ok")) << r.out;
}

TEST(DeployFiles, SystemdStopOutlastsTheDrain) {
  const std::string unit = read_text_file(kSource + "/deploy/systemd/kvmesh.service");
  EXPECT_TRUE(has(unit, "\nKillSignal=SIGTERM\n"));
  EXPECT_TRUE(has(unit, "\nKillMode=mixed\n"));
  std::smatch stop, drain;
  ASSERT_TRUE(std::regex_search(unit, stop, std::regex("\nTimeoutStopSec=(\\d+)\n")));
  ASSERT_TRUE(std::regex_search(unit, drain, std::regex("--drain-timeout (\\d+)")));
  EXPECT_GT(std::stoi(stop[1]), std::stoi(drain[1]));
  EXPECT_TRUE(has(unit, "\nRestartPreventExitStatus=2\n"));
}

TEST(DeployFiles, DockerfileBuildsWithInstallDepsInTwoStages) {
  const std::string df = read_text_file(kSource + "/deploy/docker/Dockerfile");
  EXPECT_TRUE(has(df, " AS build\n"));
  EXPECT_TRUE(has(df, " AS runtime\n"));
  EXPECT_TRUE(has(df, "RUN bash deploy/install_deps.sh"));
  EXPECT_TRUE(has(df, "openmpi-bin"));
  EXPECT_TRUE(has(df, "COPY --from=build /opt/kvmesh /opt/kvmesh"));
}

TEST(LaunchDryRun, PrintsTheDocumentedMpirunLine) {
  CommandResult r = run_command(kLaunch + " --hostfile " + kSource + "/deploy/hostfile.example --tp 8 --pp 2" +
                                    " --iface ib0 --bin /opt/kvmesh/bin/kvmesh-serve --dry-run -- --model /m --port 8000",
                                30);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* part : {"mpirun --hostfile ", " -np 16 --map-by ppr:8:node --bind-to none",
                           "--mca btl_tcp_if_include ib0 --mca oob_tcp_if_include ib0 -x NCCL_SOCKET_IFNAME=ib0",
                           "-x NCCL_DEBUG=WARN", "OMPI_COMM_WORLD_LOCAL_RANK", "CUDA_VISIBLE_DEVICES",
                           "kvmesh-rank /opt/kvmesh/bin/kvmesh-serve --tp 8 --pp 2 --model /m --port 8000"}) {
    EXPECT_TRUE(has(r.out, part)) << "missing '" << part << "' in\n" << r.out;
  }
  EXPECT_TRUE(has(r.err, "16 ranks (tp 8 x pp 2) on 2 of 2 hosts, 8 per host")) << r.err;
  // A subnet restricts MPI's TCP; NCCL only takes interface names, so it is left alone.
  CommandResult subnet = run_command(kLaunch + " --hostfile " + kSource + "/deploy/hostfile.example --tp 8 --pp 1" +
                                         " --iface 10.211.0.0/24 --bin /bin/true --dry-run", 30);
  ASSERT_EQ(subnet.exit_code, 0) << subnet.err;
  EXPECT_TRUE(has(subnet.out, "--mca btl_tcp_if_include 10.211.0.0/24 --mca oob_tcp_if_include 10.211.0.0/24"));
  EXPECT_FALSE(has(subnet.out, "NCCL_SOCKET_IFNAME")) << subnet.out;
}

TEST(LaunchDryRun, GpuBindingPicksFromTheNodesOwnDeviceList) {
  // The printed command's wrapper, run by hand as a rank, in front of a program that shows its GPU.
  const std::string dir = temp_dir("gpu");
  write_file(dir + "/show.sh", "#!/bin/sh\necho \"gpu=$CUDA_VISIBLE_DEVICES\"\n");
  fs::permissions(dir + "/show.sh", fs::perms::owner_all);
  CommandResult dry = run_command(kLaunch + " --hostfile " + kSource + "/deploy/hostfile.example --tp 8 --pp 1" +
                                      " --bin " + dir + "/show.sh --dry-run", 30);
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  const std::string line = dry.out.substr(dry.out.find(" bash -c ") + 1);
  CommandResult listed =
      run_command("env OMPI_COMM_WORLD_LOCAL_RANK=1 CUDA_VISIBLE_DEVICES=4,5,6 bash -c " + shell_quote(line), 30);
  EXPECT_EQ(listed.out, "gpu=5\n") << listed.err;
  CommandResult unset = run_command("env -u CUDA_VISIBLE_DEVICES OMPI_COMM_WORLD_LOCAL_RANK=3 bash -c " + shell_quote(line), 30);
  EXPECT_EQ(unset.out, "gpu=3\n") << unset.err;
  CommandResult too_few =
      run_command("env OMPI_COMM_WORLD_LOCAL_RANK=2 CUDA_VISIBLE_DEVICES=0,1 bash -c " + shell_quote(line), 30);
  EXPECT_NE(too_few.exit_code, 0);
  EXPECT_TRUE(has(too_few.err, "local rank 2 has no GPU")) << too_few.err;
}

struct BadLaunch {
  std::string hostfile;  // "" = no hostfile at all
  std::string args;
  std::string message;
};

TEST(LaunchDryRun, BadLayoutsExitTwoWithOneClearLine) {
  const std::string dir = temp_dir("launch");
  const BadLaunch cases[] = {
      {"", "--tp 2 --pp 1", "hostfile " + dir + "/missing does not exist"},
      {"a slots=8\nb slots=8\n", "--tp 3 --pp 2", "host a has slots=8, not a multiple of --tp 3"},
      {"a slots=8\nb slots=8\n", "--tp 8 --pp 3", "tp*pp = 8*3 = 24 ranks but"},
      {"a slots=8\nb slots=4\n", "--tp 4 --pp 2", "hosts list different slots"},
      {"a\n", "--tp 1 --pp 1", "host a has no slots=N"},
      {"a slots=8\n", "--pp 1", "--tp is required"},
      {"# nothing\n", "--tp 1 --pp 1", "lists no hosts"},
  };
  int i = 0;
  for (const BadLaunch& c : cases) {
    const std::string hostfile = dir + (c.hostfile.empty() ? "/missing" : "/hosts" + std::to_string(i++));
    if (!c.hostfile.empty()) write_file(hostfile, c.hostfile);
    CommandResult r = run_command(kLaunch + " --bin /bin/true --dry-run --hostfile " + hostfile + " " + c.args, 30);
    EXPECT_EQ(r.exit_code, 2) << c.args << ": " << r.err;
    EXPECT_TRUE(has(r.err, c.message)) << "expected '" << c.message << "' in: " << r.err;
    EXPECT_TRUE(r.out.empty()) << "nothing is printed to run: " << r.out;
  }
}

TEST(SlurmScript, ChecksTaskCountsAndCallsSrunWithPmix) {
  const std::string dir = temp_dir("slurm");
  fs::create_directories(dir + "/bin");
  write_file(dir + "/bin/srun", "#!/bin/sh\necho \"srun $*\"\n");
  fs::permissions(dir + "/bin/srun", fs::perms::owner_all);
  const std::string env = "env PATH=" + dir + "/bin:$PATH TMPDIR=" + dir +
                          " SLURM_JOB_ID=7 SLURM_NTASKS_PER_NODE='8(x2)' SLURM_JOB_NUM_NODES=2 SLURM_NTASKS=16 "
                          "KVMESH_MODEL=/models/m KVMESH_BIN=/opt/kvmesh/bin/kvmesh-serve ";
  const std::string sbatch = " bash " + kSource + "/deploy/slurm/kvmesh.sbatch";
  CommandResult ok = run_command(env + sbatch, 30);
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  for (const char* part : {"srun --mpi=pmix --distribution=block:block --kill-on-bad-exit=1",
                           "/opt/kvmesh/bin/kvmesh-serve --tp 8 --pp 2 --model /models/m", "SLURM_LOCALID"}) {
    EXPECT_TRUE(has(ok.out, part)) << "missing '" << part << "' in\n" << ok.out;
  }
  CommandResult bad_tp = run_command(env + "KVMESH_TP=3" + sbatch, 30);
  EXPECT_EQ(bad_tp.exit_code, 2);
  EXPECT_TRUE(has(bad_tp.err, "must be a multiple of KVMESH_TP (3)")) << bad_tp.err;
  CommandResult bad_pp = run_command(env + "KVMESH_PP=3" + sbatch, 30);
  EXPECT_EQ(bad_pp.exit_code, 2);
  EXPECT_TRUE(has(bad_pp.err, "= 24 but the job has 16 tasks")) << bad_pp.err;
}

}  // namespace
}  // namespace kvmesh::testing
