// ParallelLayout: ownership arithmetic of the TP x PP grid and its validation.
#include "worker/parallel.h"

namespace kvmesh {

Range balanced_range(int64_t n, int parts, int i) {
  const int64_t base = n / parts, extra = n % parts;
  const int64_t begin = i * base + (i < extra ? i : extra);
  return {begin, begin + base + (i < extra ? 1 : 0)};
}

Status validate_layout(const ModelConfig& c, int tp, int pp, int world_size) {
  if (tp < 1 || pp < 1) return invalid_argument("--tp and --pp must be at least 1");
  if (world_size != tp * pp) {
    return invalid_argument("world size " + std::to_string(world_size) + " != tp * pp = " +
                            std::to_string(tp) + " * " + std::to_string(pp) +
                            "; launch with mpirun -np " + std::to_string(tp * pp));
  }
  if (c.n_head % tp != 0) {
    return invalid_argument("the model's " + std::to_string(c.n_head) +
                            " attention heads cannot be split over --tp " + std::to_string(tp) +
                            " (heads must be divisible by tp)");
  }
  if (c.n_inner % tp != 0) {
    return invalid_argument("the MLP width " + std::to_string(c.n_inner) +
                            " is not divisible by --tp " + std::to_string(tp));
  }
  if (pp > c.n_layer) {
    return invalid_argument("--pp " + std::to_string(pp) + " exceeds the model's " +
                            std::to_string(c.n_layer) + " layers");
  }
  return Status::ok();
}

}  // namespace kvmesh
