// OpTimeline: device time of each CUDA backend op, for benchmarks (off unless
// set_cuda_op_timing(true)). Each op's end is an event on the compute stream; an op's time is the
// span from the previous op's event to its own. So that the spans hold device work rather than
// the device waiting for the host to issue the next op, a timeline starts with a hold kernel that
// keeps the stream busy while the host issues a step's ops; a timeline the device caught up with
// anyway (its hold too short) is counted as starved. Ops inside a graph recording are not timed;
// a graph's replay is timed as one op. Work other code puts on the stream between two ops (NCCL's
// collectives) counts towards the next op.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "worker/cuda/op_times.h"

namespace kvmesh {

// Keeps `stream` busy for about ns nanoseconds (one thread sleeping).
cudaError_t launch_device_hold(int64_t ns, cudaStream_t stream);

class OpTimeline {
 public:
  OpTimeline(int device, cudaStream_t stream);
  ~OpTimeline();
  OpTimeline(const OpTimeline&) = delete;
  OpTimeline& operator=(const OpTimeline&) = delete;

  // Around each op: begin() before its first launch, end() after its last; nested ops (one op
  // built of others) count once, as the outermost. Nothing is timed while `recording`.
  void begin(bool recording);
  void end(const char* op, int64_t k = 0, int64_t n = 0, double weight_bytes = 0.0);
  // Waits for the pending events and adds their spans to the process totals.
  void flush();

 private:
  bool record_next();
  void collect();
  void give_up(const char* what, cudaError_t err);

  int device_;
  cudaStream_t stream_;
  bool broken_ = false;  // a CUDA call of the timing failed: this timeline times nothing more
  int depth_ = 0;
  bool timing_ = false;  // this op (outermost) is timed
  bool starved_ = false;
  std::vector<cudaEvent_t> events_;  // events_[0] the end of the hold, then one per op
  size_t used_ = 0;
  struct Span {
    std::string op;
    double weight_bytes;
  };
  std::vector<Span> spans_;  // spans_[i] ends at events_[i + 1]
};

// RAII form of OpTimeline::begin/end for one op.
class TimedOp {
 public:
  TimedOp(OpTimeline& timeline, bool recording, const char* op, int64_t k = 0, int64_t n = 0,
          double weight_bytes = 0.0)
      : timeline_(timeline), op_(op), k_(k), n_(n), weight_bytes_(weight_bytes) {
    timeline_.begin(recording);
  }
  ~TimedOp() { timeline_.end(op_, k_, n_, weight_bytes_); }
  TimedOp(const TimedOp&) = delete;
  TimedOp& operator=(const TimedOp&) = delete;

 private:
  OpTimeline& timeline_;
  const char* op_;
  int64_t k_, n_;
  double weight_bytes_;
};

}  // namespace kvmesh
