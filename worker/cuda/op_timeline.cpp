// OpTimeline: the per-op events of one CUDA backend's compute stream and the process-wide totals
// they add to (see op_timeline.h).
#include "worker/cuda/op_timeline.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <mutex>
#include <set>

namespace kvmesh {
namespace {

struct Registry {
  std::atomic<bool> on{false};  // read by every op of every backend: no lock
  std::atomic<int64_t> hold_ns{10'000'000};
  std::mutex mu;                // guards the totals and the timelines
  OpTimes totals;
  std::set<OpTimeline*> timelines;
};

Registry& registry() {
  static Registry r;
  return r;
}

bool timing_on() { return registry().on.load(std::memory_order_relaxed); }

}  // namespace

void set_cuda_op_timing(bool on, double hold_seconds) {
  Registry& r = registry();
  r.hold_ns = static_cast<int64_t>(std::max(0.0, hold_seconds) * 1e9);
  r.on = on;
}

OpTimes take_cuda_op_times() {
  Registry& r = registry();
  std::vector<OpTimeline*> timelines;
  {
    std::lock_guard<std::mutex> lock(r.mu);
    timelines.assign(r.timelines.begin(), r.timelines.end());
  }
  for (OpTimeline* t : timelines) t->flush();
  std::lock_guard<std::mutex> lock(r.mu);
  OpTimes out = std::move(r.totals);
  r.totals = OpTimes{};
  return out;
}

OpTimeline::OpTimeline(int device, cudaStream_t stream) : device_(device), stream_(stream) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.timelines.insert(this);
}

OpTimeline::~OpTimeline() {
  flush();
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    r.timelines.erase(this);
  }
  for (cudaEvent_t e : events_) (void)cudaEventDestroy(e);
}

void OpTimeline::give_up(const char* what, cudaError_t err) {
  std::fprintf(stderr, "kvmesh: op timing stopped on cuda:%d: %s: %s\n", device_, what, cudaGetErrorName(err));
  (void)cudaGetLastError();
  broken_ = true;
  used_ = 0;
  spans_.clear();
}

bool OpTimeline::record_next() {
  if (used_ == events_.size()) {
    cudaEvent_t e = nullptr;
    const cudaError_t err = cudaEventCreate(&e);
    if (err != cudaSuccess) {
      give_up("cudaEventCreate", err);
      return false;
    }
    events_.push_back(e);
  }
  const cudaError_t err = cudaEventRecord(events_[used_], stream_);
  if (err != cudaSuccess) {
    give_up("cudaEventRecord", err);
    return false;
  }
  ++used_;
  return true;
}

void OpTimeline::begin(bool recording) {
  if (depth_++ > 0) return;
  timing_ = false;
  if (broken_ || recording || !timing_on()) return;
  if (cudaSetDevice(device_) != cudaSuccess) return;  // the op itself reports it
  if (used_ > 0) {
    // A stretch is pending: once the device has finished it, fold it in and hold anew.
    const cudaError_t done = cudaEventQuery(events_[used_ - 1]);
    if (done == cudaSuccess) {
      collect();
    } else if (done != cudaErrorNotReady) {
      give_up("cudaEventQuery", done);
      return;
    } else if (!starved_ && cudaEventQuery(events_[0]) == cudaSuccess) {
      starved_ = true;  // the device is past the hold while ops are still being issued
    }
  }
  if (used_ == 0) {
    const cudaError_t held = launch_device_hold(registry().hold_ns.load(), stream_);
    if (held != cudaSuccess) {
      give_up("the hold kernel", held);
      return;
    }
    if (!record_next()) return;
  }
  timing_ = true;
}

void OpTimeline::end(const char* op, int64_t k, int64_t n, double weight_bytes) {
  if (--depth_ > 0 || !timing_) return;
  timing_ = false;
  if (!record_next()) return;
  std::string label = op;
  if (k > 0 && n > 0) label.append(" ").append(std::to_string(k)).append("x").append(std::to_string(n));
  spans_.push_back({std::move(label), weight_bytes});
}

void OpTimeline::flush() {
  if (broken_ || used_ == 0) return;
  if (cudaSetDevice(device_) != cudaSuccess) return;
  const cudaError_t done = cudaEventSynchronize(events_[used_ - 1]);
  if (done != cudaSuccess) {
    give_up("cudaEventSynchronize", done);
    return;
  }
  collect();
}

// Every pending event is complete.
void OpTimeline::collect() {
  std::vector<float> ms(spans_.size(), 0.0f);
  for (size_t i = 0; i < spans_.size(); ++i) {
    const cudaError_t err = cudaEventElapsedTime(&ms[i], events_[i], events_[i + 1]);
    if (err != cudaSuccess) {
      give_up("cudaEventElapsedTime", err);
      return;
    }
  }
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    if (!spans_.empty()) {
      ++r.totals.timelines;
      if (starved_) ++r.totals.starved_timelines;
    }
    for (size_t i = 0; i < spans_.size(); ++i) {
      OpTime& t = r.totals.ops[spans_[i].op];
      ++t.calls;
      t.seconds += ms[i] * 1e-3;
      t.weight_bytes += spans_[i].weight_bytes;
    }
  }
  used_ = 0;
  spans_.clear();
  starved_ = false;
}

}  // namespace kvmesh
