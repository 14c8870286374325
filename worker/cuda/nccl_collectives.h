// NCCL implementation of the Collectives data plane on device memory: one communicator per TP group
// and one per pair of adjacent PP stages, created from ids sent over MPI. Control-plane calls
// (world_min, agree, ...) go to the MPI collectives it wraps.
#pragma once

#include <memory>

#include "worker/collectives.h"
#include "worker/parallel.h"

namespace kvmesh {

// control: the MPI collectives of the same layout. The communicators are created in
// bind_stream() (every rank, after its CUDA backend exists). A collective that has not finished
// after timeout_s, or that NCCL reports failed, aborts the communicators and ends the job.
std::unique_ptr<Collectives> make_nccl_collectives(const ParallelLayout& layout,
                                                   std::unique_ptr<Collectives> control,
                                                   double timeout_s);

}  // namespace kvmesh
