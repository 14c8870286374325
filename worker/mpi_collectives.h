// MPI implementation of Collectives: TP groups are consecutive ranks, PP peers are tp ranks apart.
#pragma once

#include <memory>

#include "worker/collectives.h"
#include "worker/parallel.h"

namespace kvmesh {

// Needs MPI initialised; collective over MPI_COMM_WORLD (every rank must call it).
std::unique_ptr<Collectives> make_mpi_collectives(const ParallelLayout& layout);

}  // namespace kvmesh
