// Startup misconfigurations under mpirun: one clear message from rank 0 and a non-zero exit of
// the whole job, never a hang; a rank stuck in its start-up ends the job after --startup-timeout.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "command_runner.h"
#include "common/safetensors.h"
#include "engine_fixture.h"

namespace kvmesh::testing {
namespace {

const std::string kGenerate = KVMESH_BIN_DIR "/tools/kvmesh-generate";
const std::string kRequest = R"('{"prompt": [464, 2068], "max_tokens": 2, "temperature": 0}')";

CommandResult launch(int n_ranks, int tp, int pp, const std::string& model) {
  return run_command(mpirun_prefix(n_ranks) + kGenerate + " --model " + model + " --threads 1 --tp " +
                         std::to_string(tp) + " --pp " + std::to_string(pp) + " --request " + kRequest,
                     120);
}

// Lines kvmesh itself printed (mpirun adds its own banner).
int count_kvmesh_lines(const std::string& err) {
  int n = 0;
  for (size_t at = err.find("kvmesh-generate:"); at != std::string::npos; at = err.find("kvmesh-generate:", at + 1)) ++n;
  return n;
}

TEST(StartupChecks, WorldSizeMustEqualTpTimesPp) {
  CommandResult r = launch(2, 1, 1, hf_fixture_dir());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("world size 2 != tp * pp"), std::string::npos) << r.err;
  EXPECT_EQ(count_kvmesh_lines(r.err), 1) << r.err;
}

TEST(StartupChecks, HeadsMustDivideByTp) {
  CommandResult r = launch(3, 3, 1, hf_fixture_dir());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("heads must be divisible by tp"), std::string::npos) << r.err;
  EXPECT_EQ(count_kvmesh_lines(r.err), 1) << r.err;
}

TEST(StartupChecks, PipelineStagesMustNotExceedLayers) {
  CommandResult r = launch(5, 1, 5, hf_fixture_dir());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--pp 5 exceeds the model's 4 layers"), std::string::npos) << r.err;
  EXPECT_EQ(count_kvmesh_lines(r.err), 1) << r.err;
}

TEST(StartupChecks, CheckpointUnreadableOnOneRank) {
  // A copy of the fixture missing one tensor of the last layer: only the second pipeline stage
  // reads it, so only rank 1 fails, and rank 0 reports rank 1's message.
  const std::string dir = ::testing::TempDir() + "/kvmesh_missing_tensor";
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(hf_fixture_dir() + "/config.json", dir + "/config.json",
                             std::filesystem::copy_options::overwrite_existing);
  auto src = SafetensorsFile::open(hf_fixture_dir() + "/model.safetensors");
  ASSERT_TRUE(src.is_ok());
  std::vector<TensorToWrite> tensors;
  for (const auto& [name, info] : (*src)->tensors()) {
    if (name == "transformer.h.3.mlp.c_fc.weight") continue;
    const uint8_t* data = (*src)->data(info);
    tensors.push_back({name, info.dtype, info.shape,
                       std::string(reinterpret_cast<const char*>(data), info.end - info.begin)});
  }
  ASSERT_TRUE(write_safetensors(dir + "/model.safetensors", tensors).is_ok());

  CommandResult r = launch(2, 1, 2, dir);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("rank 1"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("h.3.mlp.c_fc.weight"), std::string::npos) << r.err;
  EXPECT_EQ(count_kvmesh_lines(r.err), 1) << r.err;
  std::filesystem::remove_all(dir);
}

// A rank held in its start-up (here: told to stop there) would hold its peers in the start-up's
// next agreement for good; --startup-timeout ends the job with one line saying so.
TEST(StartupChecks, RankStuckInItsStartupEndsTheJobAfterTheStartupTimeout) {
  const auto start = std::chrono::steady_clock::now();
  CommandResult r = run_command("env KVMESH_DEBUG_STALL_STARTUP_RANK=1 " + mpirun_prefix(2) + kGenerate +
                                    " --model " + hf_fixture_dir() + " --threads 1 --tp 2 --startup-timeout 5 --request " +
                                    kRequest,
                                120);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(r.exit_code, 124) << "the job was still running after 120 s\n" << r.err;
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("rank 1: stopping in its start-up"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("start-up did not finish within 5 s"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("\"choices\""), std::string::npos) << r.out;
  EXPECT_LT(seconds, 60) << r.err;
  std::printf("job ended after %.1f s (exit code %d)\n", seconds, r.exit_code);
}

}  // namespace
}  // namespace kvmesh::testing
