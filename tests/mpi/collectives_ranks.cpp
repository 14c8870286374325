// collectives_ranks: one rank of the MPI data-plane check that mpi_collectives_test launches with
// mpirun (4 ranks, TP 2 x PP 2). Each rank checks what the collectives give it against what every
// rank's inputs imply, prints one line, and exits non-zero on any mismatch.
#include <cstdio>
#include <string>
#include <vector>

#include "worker/mpi_collectives.h"
#include "worker/mpi_runtime.h"

namespace {

int failures = 0;

void expect(bool ok, int rank, const std::string& what) {
  if (ok) return;
  ++failures;
  std::fprintf(stderr, "rank %d: %s\n", rank, what.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  kvmesh::MpiRuntime mpi(&argc, &argv);
  kvmesh::ParallelLayout layout;
  layout.tp = 2;
  layout.pp = 2;
  layout.rank = mpi.rank();
  if (!mpi.active() || mpi.world_size() != layout.world_size()) {
    std::fprintf(stderr, "collectives_ranks: run under mpirun -np %d\n", layout.world_size());
    return 2;
  }
  const int rank = layout.rank;
  auto collectives = kvmesh::make_mpi_collectives(layout);

  // tp_all_true: false on one rank is false in its TP group only.
  expect(collectives->tp_all_true(true), rank, "tp_all_true(true everywhere) is false");
  for (int victim = 0; victim < layout.world_size(); ++victim) {
    const bool got = collectives->tp_all_true(rank != victim);
    const bool same_group = victim / layout.tp == layout.pp_rank();
    expect(got == !same_group, rank,
           "tp_all_true with rank " + std::to_string(victim) + " false gave " + (got ? "true" : "false"));
  }

  // tp_all_reduce_sum: the group's ranks summed.
  std::vector<float> values = {static_cast<float>(rank), 1.0f};
  collectives->tp_all_reduce_sum(values.data(), 2);
  const float group_first = static_cast<float>(layout.pp_rank() * layout.tp);
  expect(values[0] == 2 * group_first + 1 && values[1] == 2.0f, rank, "tp_all_reduce_sum");

  // world_min and agree: every rank sees the same answer.
  expect(collectives->world_min(10 + rank) == 10, rank, "world_min");
  const kvmesh::Status agreed =
      collectives->agree(rank == 2 ? kvmesh::invalid_argument("bad shard") : kvmesh::Status::ok());
  expect(!agreed.is_ok() && agreed.message().find("rank 2: bad shard") != std::string::npos, rank,
         "agree gave " + agreed.to_string());

  std::fprintf(stderr, "rank %d: %s\n", rank, failures == 0 ? "collectives agree" : "collectives differ");
  return failures == 0 ? 0 : 1;
}
