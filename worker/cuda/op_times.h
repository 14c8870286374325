// Op timing's switch and totals, for benchmarks: the device time of each CUDA backend op, summed
// over every CUDA backend of the process (measured by OpTimeline, op_timeline.h). Free of CUDA
// headers, so a benchmark needs only the kvmesh_cuda library.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace kvmesh {

struct OpTime {
  int64_t calls = 0;
  double seconds = 0.0;
  double weight_bytes = 0.0;  // weights the calls read (matrix products), for a bandwidth
};

// What the timed backends of this process measured since the last take_cuda_op_times().
struct OpTimes {
  // Held stretches of ops: a new one starts whenever the device has finished the previous one (at
  // least one per step that waits for its results).
  int64_t timelines = 0;
  int64_t starved_timelines = 0;  // the device got past the hold while the host still issued ops
  std::map<std::string, OpTime> ops;
};

// Turns op timing on or off for every CUDA backend of the process, each timeline held back by
// hold_seconds of device time.
void set_cuda_op_timing(bool on, double hold_seconds = 0.01);
// Folds in what the timed backends still hold (waiting for their device), then hands the totals
// over and starts new ones. From the thread that runs the backends' ops.
OpTimes take_cuda_op_times();

}  // namespace kvmesh
