// CPU activations (the GELU forms and ReLU) over a contiguous array, vectorised.
#pragma once

#include <cstdint>

#include "common/config.h"

namespace kvmesh {

// x[i] = act(x[i]) for i < n. The tanh GELU forms are taken as x * sigmoid(2y), the same function
// as 0.5 x (1 + tanh y), within a few float ulps of it.
void cpu_activation(float* x, int64_t n, Activation act);

}  // namespace kvmesh
