// Time on the steady clock as kvmesh measures it: seconds since an arbitrary start (timeouts,
// step times, benchmarks) and milliseconds between two time points (request latencies).
#pragma once

#include <chrono>

namespace kvmesh {

inline double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

inline double ms_since(std::chrono::steady_clock::time_point start,
                       std::chrono::steady_clock::time_point end = std::chrono::steady_clock::now()) {
  return std::chrono::duration<double, std::milli>(end - start).count();
}

}  // namespace kvmesh
