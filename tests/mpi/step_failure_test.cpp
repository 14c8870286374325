// A step that fails on the sampling rank only reaches rank 0 at once as that step's error (not
// after --step-timeout), and the ranks stay in step: the job shuts down cleanly afterwards.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>

#include "command_runner.h"
#include "engine_fixture.h"

namespace kvmesh::testing {
namespace {

const std::string kGenerate = KVMESH_BIN_DIR "/tools/kvmesh-generate";
const std::string kRequest = R"('{"prompt": [464, 2068], "max_tokens": 4, "temperature": 0}')";

TEST(StepFailure, FailureOnTheSamplingRankReachesRankZeroAtOnce) {
  // PP 2: rank 1 is the last stage, which samples; only its first step with sequences fails.
  const auto start = std::chrono::steady_clock::now();
  CommandResult r = run_command("env KVMESH_DEBUG_FAIL_STEP_RANK=1 " + mpirun_prefix(2) + kGenerate +
                                    " --model " + hf_fixture_dir() + " --threads 1 --pp 2 --step-timeout 60 --request " +
                                    kRequest,
                                120);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(r.exit_code, 124) << "the job was still running after 120 s\n" << r.err;
  EXPECT_EQ(r.exit_code, 1) << r.err;  // the request failed; every rank left its loop normally
  EXPECT_NE(r.err.find("generation failed: rank 1: the step failed on purpose"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("stopped answering"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("aborting the job"), std::string::npos) << r.err;
  EXPECT_LT(seconds, 45) << "rank 0 waited for the step timeout (60 s)\n" << r.err;
  std::printf("the failed step's error reached rank 0 and the job ended after %.1f s\n", seconds);
}

}  // namespace
}  // namespace kvmesh::testing
