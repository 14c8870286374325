// A stuck rank in a TP or PP job over NCCL (emulated devices, emulated NCCL) ends the job with an
// error well before the test's bound instead of hanging it: a rank receiving from it, or sending
// to it, sees its communicator fail (ncclCommGetAsyncError) and aborts the communicators and the
// job, or, when NCCL would wait longer, gives up on the transfer after --step-timeout and does the
// same; when it stops after its last transfer of a step, the leader gives up on the step's result
// after --step-timeout and aborts the job; the members of a communicator it never joins give up
// after --step-timeout and abort the job. The stuck rank is the emulated NCCL's KVMESH_EMULATED_NCCL_STALL_RANK; its peers
// give up on a transfer after KVMESH_EMULATED_NCCL_TIMEOUT_S, as NCCL reports a peer that is gone.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "command_runner.h"
#include "engine_fixture.h"

namespace kvmesh::testing {
namespace {

constexpr int kBoundSeconds = 120;  // the job must be over long before this

struct StuckRank {
  int tp = 1, pp = 1;
  int stuck_rank = 1;
  int stall_after = 1;  // the stuck rank's transfer at which it stops (0: before it joins)
  const char* reported = "";  // what stderr says
  int nccl_timeout_s = 3;     // KVMESH_EMULATED_NCCL_TIMEOUT_S (the step timeout is 10 s)
  bool once_done = false;     // stops once that transfer is done, not before it begins
};
constexpr char kNcclAbort[] = "aborting the communicators and the job";
constexpr char kTransferTimeout[] = "not finished after 10 s (a peer rank is gone or stuck); aborting";
constexpr char kStepTimeout[] = "a rank stopped answering";

class EmulatedNcclStuckRank : public ::testing::TestWithParam<StuckRank> {};

TEST_P(EmulatedNcclStuckRank, EndsTheJobWithAnError) {
  const StuckRank p = GetParam();
  const std::string request = R"({"prompt": "The quick brown fox", "max_tokens": 24, "temperature": 0})";
  const std::string cmd = "env KVMESH_EMULATED_DEVICES=4 KVMESH_EMULATED_NCCL_TIMEOUT_S=" +
                          std::to_string(p.nccl_timeout_s) + " KVMESH_EMULATED_NCCL_STALL_RANK=" +
                          std::to_string(p.stuck_rank) + " KVMESH_EMULATED_NCCL_STALL_AFTER=" +
                          std::to_string(p.stall_after) + " KVMESH_EMULATED_NCCL_STALL_DONE=" +
                          (p.once_done ? "1 " : "0 ") + mpirun_prefix(p.tp * p.pp) + KVMESH_GENERATE_EMULATED +
                          " --model " + hf_fixture_dir() + " --device cuda --step-timeout 10 --tp " + std::to_string(p.tp) + " --pp " +
                          std::to_string(p.pp) + " --request " + shell_quote(request);
  const auto start = std::chrono::steady_clock::now();
  const CommandResult r = run_command(cmd, kBoundSeconds);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(r.exit_code, 124) << "the job was still running after " << kBoundSeconds << " s\n" << r.err;
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_NE(r.err.find("stops at its transfer"), std::string::npos) << "the rank never got stuck:\n" << r.err;
  EXPECT_NE(r.err.find(p.reported), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("\"choices\""), std::string::npos) << "a job with a stuck rank answered:\n" << r.out;
  std::printf("job ended after %.1f s (exit code %d)\n", seconds, r.exit_code);
}

INSTANTIATE_TEST_SUITE_P(Layouts, EmulatedNcclStuckRank,
                         ::testing::Values(StuckRank{2, 1, 1, 1, kNcclAbort},     // the prefill's first all-reduce
                                           StuckRank{2, 1, 1, 40, kNcclAbort},    // a decode step
                                           StuckRank{1, 2, 0, 5, kNcclAbort},     // the first stage, sending
                                           StuckRank{1, 2, 1, 3, kNcclAbort},     // the last stage, receiving
                                           StuckRank{1, 2, 1, 3, kTransferTimeout, 60},  // the same, NCCL slower
                                           StuckRank{1, 2, 1, 3, kStepTimeout, 60, true},  // the last, after it
                                           StuckRank{2, 1, 1, 0, kNcclAbort}),    // never joins the TP group
                         [](const auto& info) {
                           const StuckRank& p = info.param;
                           return "tp" + std::to_string(p.tp) + "_pp" + std::to_string(p.pp) + "_rank" +
                                  std::to_string(p.stuck_rank) + "_transfer" + std::to_string(p.stall_after) +
                                  (p.once_done ? "_done" : "") + "_nccl" + std::to_string(p.nccl_timeout_s) + "s";
                         });

}  // namespace
}  // namespace kvmesh::testing
