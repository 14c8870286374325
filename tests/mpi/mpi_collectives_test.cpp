// The MPI data plane under mpirun: collectives_ranks checks, on each of 4 ranks (TP 2 x PP 2),
// the TP-group agreement decode graphs use mid-step, the TP sum, and the world reductions.
#include <gtest/gtest.h>

#include "command_runner.h"

namespace kvmesh::testing {
namespace {

TEST(MpiCollectives, EveryRankGetsWhatTheGroupsInputsImply) {
  const CommandResult r = run_command(mpirun_prefix(4) + KVMESH_BIN_DIR "/tests/collectives_ranks", 120);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  for (int rank = 0; rank < 4; ++rank)
    EXPECT_NE(r.err.find("rank " + std::to_string(rank) + ": collectives agree"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace kvmesh::testing
