// The emulated CUDA runtime: device memory is host memory registered by range (copies check
// their pointers against it, and fresh allocations read as NaN); each stream keeps its work until
// the host waits on it (cudaStreamSynchronize, an event recorded after the work, a synchronous
// copy on the default stream for blocking streams, cudaDeviceSynchronize, cudaFree) or another
// stream waits on one of its events, so work that nothing orders runs late, as it may on a GPU;
// a query runs it up to work that waits for a peer which has not answered yet (cudaErrorNotReady);
// a capture records the work for graph launches to replay.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "emulated_device.h"
#include "emulated_runtime.h"

// ---------------------------------------------------------------- memory
namespace {
std::mutex mu;
std::map<uintptr_t, size_t> device_allocs, pinned_allocs;
size_t device_used = 0;
constexpr size_t kDeviceTotal = 4ull << 30;
thread_local cudaError_t last_error = cudaSuccess;
thread_local int current_device = 0;

// How many devices the process sees: KVMESH_EMULATED_DEVICES (default 1; 0 is none, as is
// KVMESH_EMULATED_NO_DEVICE). They share one memory: each rank of a job uses one of them.
int device_count() {
  if (std::getenv("KVMESH_EMULATED_NO_DEVICE") != nullptr) return 0;
  return static_cast<int>(cuemu::env_count("KVMESH_EMULATED_DEVICES", 1, 64));
}

const std::pair<const uintptr_t, size_t>* find_in(const std::map<uintptr_t, size_t>& m, const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  auto it = m.upper_bound(a);
  if (it == m.begin()) return nullptr;
  --it;
  if (a < it->first + it->second || (a == it->first)) return &*it;
  return nullptr;
}
bool in_range(const std::map<uintptr_t, size_t>& m, const void* p, size_t n) {
  auto* r = find_in(m, p);
  return r != nullptr && reinterpret_cast<uintptr_t>(p) + n <= r->first + r->second;
}
bool is_device(const void* p) { return find_in(device_allocs, p) != nullptr; }
bool is_pinned(const void* p) { return find_in(pinned_allocs, p) != nullptr; }
}  // namespace

namespace cuemu {
long env_count(const char* name, long fallback, long max) {
  const char* named = std::getenv(name);
  if (named == nullptr || *named == '\0') return fallback;
  char* end = nullptr;
  const long n = std::strtol(named, &end, 10);
  if (*end != '\0' || n < 0 || n > max)
    fail((std::string(name) + " must be a count from 0 to " + std::to_string(max)).c_str());
  return n;
}

void check_device_range(const void* p, size_t n, const char* what) {
  if (n == 0) return;
  if (!in_range(device_allocs, p, n)) {
    char buf[256];
    std::snprintf(buf, sizeof(buf), "%s: [%p, +%zu) is not inside one device allocation", what, p, n);
    fail(buf);
  }
}
}  // namespace cuemu

// ---------------------------------------------------------------- runtime calls
namespace {
std::mutex calls_mu;
std::map<std::string, long, std::less<>> calls;  // by name, since the last reset
}  // namespace

namespace cuemu {
void count_runtime_call(const char* name) {
  std::lock_guard<std::mutex> lock(calls_mu);
  auto it = calls.find(std::string_view(name));  // no string made for a name seen before
  if (it == calls.end())
    calls.emplace(name, 1);
  else
    ++it->second;
}
std::map<std::string, long> runtime_calls() {
  std::lock_guard<std::mutex> lock(calls_mu);
  return {calls.begin(), calls.end()};
}
void reset_runtime_calls() {
  std::lock_guard<std::mutex> lock(calls_mu);
  calls.clear();
}
}  // namespace cuemu
using cuemu::count_runtime_call;

// ---------------------------------------------------------------- streams, events, graphs
namespace {
// One recorded piece of stream work: a kernel launch, or host work (a copy, a library call).
struct GraphNode {
  cuemu::Cfg cfg;
  std::function<void()> kernel;
  cuemu::PolledWork host;  // set for host work
  bool run(bool may_block) const {
    if (host) return host(may_block);
    cuemu::run_kernel(cfg, kernel);
    return true;
  }
};
}  // namespace
struct CUgraph_st {
  std::vector<GraphNode> nodes;
};
struct CUgraphExec_st {
  std::shared_ptr<const std::vector<GraphNode>> nodes;
};
// A stream's work waits in `queued` until the host waits on the stream, on an event recorded
// after it, or on a stream that waits on such an event: the order a GPU may run it in when
// nothing else orders it.
struct CUstream_st {
  bool capturing = false;
  bool invalidated = false;
  bool blocking = true;  // created without cudaStreamNonBlocking: the legacy default stream waits for it
  CUgraph_st* graph = nullptr;
  std::deque<cuemu::PolledWork> queued;
  uint64_t enqueued = 0, ran = 0;  // work items given to the stream, and run
};
// When the work before an event's record ran: host time, stamped by a work item of the record's own.
struct EventStamp {
  bool reached = false;
  std::chrono::steady_clock::time_point at;
};
struct CUevent_st {
  CUstream_st* stream = nullptr;  // where it was last recorded (null: the default stream, or never)
  uint64_t after = 0;             // it completes once that stream has run this many items
  bool timing = true;             // created without cudaEventDisableTiming
  std::shared_ptr<EventStamp> stamp;  // of its last record (null: never recorded)
};

namespace {
std::recursive_mutex stream_mu;  // the queues, and the work they run
std::vector<CUstream_st*> live_streams;  // in creation order, the order device-wide waits run them in
bool is_live(CUstream_st* s) { return std::find(live_streams.begin(), live_streams.end(), s) != live_streams.end(); }

// KVMESH_EMULATED_STREAMS=eager runs each stream's work at once, in issue order (no deferral).
bool streams_defer() {
  static const bool defer = [] {
    const char* mode = std::getenv("KVMESH_EMULATED_STREAMS");
    if (mode == nullptr || *mode == '\0' || std::strcmp(mode, "deferred") == 0) return true;
    if (std::strcmp(mode, "eager") == 0) return false;
    cuemu::fail("KVMESH_EMULATED_STREAMS must be deferred (the default) or eager");
  }();
  return defer;
}

// Runs s's queued work until it has run `upto` items; false when may_block is false and an item
// is not ready (it stays first in the queue).
std::atomic<uint64_t> items_run{0};  // stream work items run, over every stream
bool run_until(CUstream_st* s, uint64_t upto, bool may_block = true) {
  std::lock_guard<std::recursive_mutex> lock(stream_mu);
  while (s->ran < upto && !s->queued.empty()) {
    cuemu::PolledWork work = std::move(s->queued.front());
    s->queued.pop_front();
    ++s->ran;
    ++items_run;
    if (!work(may_block)) {
      s->queued.push_front(std::move(work));
      --s->ran;
      return false;
    }
  }
  return true;
}
void run_all(CUstream_st* s) { run_until(s, s->enqueued); }
// What the legacy default stream waits for before its own work: every blocking stream.
void run_blocking_streams() {
  std::lock_guard<std::recursive_mutex> lock(stream_mu);
  for (CUstream_st* s : live_streams)
    if (s->blocking) run_all(s);
}
void run_every_stream() {
  std::lock_guard<std::recursive_mutex> lock(stream_mu);
  for (CUstream_st* s : live_streams) run_all(s);
}

// Work issued to `stream` outside a capture: queued on it, or run now on the default stream.
void issue(cudaStream_t stream, cuemu::PolledWork work) {
  std::lock_guard<std::recursive_mutex> lock(stream_mu);
  if (stream == nullptr) {
    run_blocking_streams();
    work(/*may_block=*/true);
    return;
  }
  stream->queued.push_back(std::move(work));
  ++stream->enqueued;
  if (!streams_defer()) run_all(stream);
}

// Held through a call that makes the host wait: counted as "host wait for unfinished work" when
// the wait had queued stream work to run (on a GPU that work may have been done already, so this
// counts the waits that can hold the host, an upper bound).
// A wait inside another (a copy into pageable memory waiting for its stream) is the outer one's.
class HostWait {
 public:
  HostWait() : before_(items_run.load()) { ++depth; }
  ~HostWait() {
    if (--depth == 0 && items_run.load() != before_) cuemu::count_runtime_call("host wait for unfinished work");
  }

 private:
  static thread_local int depth;
  uint64_t before_;
};
thread_local int HostWait::depth = 0;

// The host waits for everything issued to s so far (the legacy default stream: every blocking stream).
void wait_for_stream(cudaStream_t s) {
  if (s == nullptr)
    run_blocking_streams();
  else
    run_all(s);
}

CUstream_st* capture_of(cudaStream_t s) { return s != nullptr && s->capturing ? s : nullptr; }
cudaError_t capture_violation(cudaStream_t s, const char* what) {
  std::fprintf(stderr, "emulated CUDA: %s on a capturing stream: the capture is invalidated\n", what);
  s->invalidated = true;
  return cudaErrorStreamCaptureUnsupported;
}
}  // namespace

namespace cuemu {
void launch_closure(const Cfg& cfg, std::function<void()> fn) {
  count_runtime_call("kernel launch");
  const unsigned threads = cfg.block.x * cfg.block.y * cfg.block.z;
  if (threads == 0 || threads > 1024 || cfg.block.z > 64 || cfg.grid.x == 0 || cfg.grid.y == 0 ||
      cfg.grid.z == 0 || cfg.grid.y > 65535 || cfg.grid.z > 65535 || cfg.grid.x > 0x7fffffffu || cfg.smem > 0) {
    last_error = cudaErrorInvalidConfiguration;
    return;
  }
  if (cfg.overlap) fn = checking_overlap_waits(std::move(fn));
  if (CUstream_st* s = capture_of(cfg.stream)) {
    if (!s->invalidated) s->graph->nodes.push_back({cfg, std::move(fn), nullptr});
    return;
  }
  issue(cfg.stream, [cfg, fn = std::move(fn)](bool) {
    run_kernel(cfg, fn);
    return true;
  });
}
}  // namespace cuemu

namespace cuemu {
void run_on_stream_polled(cudaStream_t stream, PolledWork work) {
  if (CUstream_st* s = capture_of(stream)) {
    if (!s->invalidated) s->graph->nodes.push_back({Cfg(dim3(1), dim3(1), 0, stream), nullptr, std::move(work)});
    return;
  }
  issue(stream, std::move(work));
}
void run_on_stream(cudaStream_t stream, std::function<void()> fn) {
  run_on_stream_polled(stream, [fn = std::move(fn)](bool) {
    fn();
    return true;
  });
}
}  // namespace cuemu

namespace {

void check_copy(void* dst, const void* src, size_t n, cudaMemcpyKind kind, const char* what) {
  if (n == 0) return;
  const bool dd = in_range(device_allocs, dst, n), sd = in_range(device_allocs, src, n);
  char buf[256];
  auto bad = [&](const char* why) {
    std::snprintf(buf, sizeof(buf), "%s of %zu bytes %p -> %p: %s", what, n, src, dst, why);
    cuemu::fail(buf);
  };
  switch (kind) {
    case cudaMemcpyHostToDevice:
      if (!dd) bad("destination is not device memory");
      if (is_device(src)) bad("source is device memory");
      break;
    case cudaMemcpyDeviceToHost:
      if (!sd) bad("source is not device memory");
      if (is_device(dst)) bad("destination is device memory");
      break;
    case cudaMemcpyDeviceToDevice:
      if (!dd || !sd) bad("not both device memory");
      break;
    case cudaMemcpyDefault:
      if (is_device(dst) && !dd) bad("destination runs past its allocation");
      if (is_device(src) && !sd) bad("source runs past its allocation");
      break;
    default: bad("host to host");
  }
}
}  // namespace

extern "C" {

cudaError_t cudaGetLastError(void) {
  count_runtime_call(__func__);
  cudaError_t e = last_error;
  last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError(void) {
  count_runtime_call(__func__);
  return last_error;
}
const char* cudaGetErrorString(cudaError_t e) {
  static thread_local std::string s;
  s = "emulated CUDA error " + std::to_string(static_cast<int>(e));
  return s.c_str();
}
const char* cudaGetErrorName(cudaError_t e) { return cudaGetErrorString(e); }
cudaError_t cudaGetDeviceCount(int* n) {
  count_runtime_call(__func__);
  *n = device_count();
  return *n ? cudaSuccess : cudaErrorNoDevice;
}
cudaError_t cudaSetDevice(int d) {
  count_runtime_call(__func__);
  if (d < 0 || d >= device_count()) return last_error = cudaErrorInvalidDevice;
  current_device = d;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* d) {
  count_runtime_call(__func__);
  *d = current_device;
  return cudaSuccess;
}
// The emulated device's compute capability and multiprocessors, as an H200's.
constexpr int kComputeMajor = 9, kComputeMinor = 0, kMultiprocessors = 132;
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
  count_runtime_call(__func__);
  if (d < 0 || d >= device_count()) return cudaErrorInvalidDevice;
  std::memset(p, 0, sizeof(*p));
  std::snprintf(p->name, sizeof(p->name), "emulated H200");
  p->totalGlobalMem = kDeviceTotal;
  p->major = kComputeMajor;
  p->minor = kComputeMinor;
  p->multiProcessorCount = kMultiprocessors;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->sharedMemPerBlock = 48 * 1024;
  p->memoryBusWidth = 6144;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int d) {
  count_runtime_call(__func__);
  if (d < 0 || d >= device_count()) return cudaErrorInvalidDevice;
  switch (attr) {
    case cudaDevAttrComputeCapabilityMajor: *value = kComputeMajor; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *value = kComputeMinor; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *value = kMultiprocessors; return cudaSuccess;
    default: return cudaErrorInvalidValue;
  }
}
// Every emulated kernel is built from the backend's own source, as for sm_90.
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, const void* func) {
  count_runtime_call(__func__);
  if (func == nullptr) return cudaErrorInvalidDeviceFunction;
  std::memset(attr, 0, sizeof(*attr));
  attr->maxThreadsPerBlock = 1024;
  attr->ptxVersion = kComputeMajor * 10 + kComputeMinor;
  attr->binaryVersion = kComputeMajor * 10 + kComputeMinor;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) {
  count_runtime_call(__func__);
  const HostWait wait;
  run_every_stream();
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_b, size_t* total_b) {
  count_runtime_call(__func__);
  std::lock_guard<std::mutex> l(mu);
  *total_b = kDeviceTotal;
  *free_b = kDeviceTotal - device_used;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** p, size_t n) {
  count_runtime_call(__func__);
  std::lock_guard<std::mutex> l(mu);
  if (device_used + n > kDeviceTotal) return last_error = cudaErrorMemoryAllocation;
  // The exact size (256-byte aligned, as cudaMalloc's), so AddressSanitizer sees reads past the end.
  void* m = nullptr;
  if (posix_memalign(&m, 256, n > 0 ? n : 1) != 0) return last_error = cudaErrorMemoryAllocation;
  if (n <= (64u << 20)) std::memset(m, 0xFF, n);  // uninitialised reads show as NaN
  device_allocs[reinterpret_cast<uintptr_t>(m)] = n;
  device_used += n;
  *p = m;
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  count_runtime_call(__func__);
  const HostWait wait;
  if (p == nullptr) return cudaSuccess;
  run_every_stream();  // cudaFree waits for the device, as CUDA's does
  std::lock_guard<std::mutex> l(mu);
  auto it = device_allocs.find(reinterpret_cast<uintptr_t>(p));
  if (it == device_allocs.end()) cuemu::fail("cudaFree of a pointer cudaMalloc did not return");
  device_used -= it->second;
  device_allocs.erase(it);
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void** p, size_t n) {
  count_runtime_call(__func__);
  std::lock_guard<std::mutex> l(mu);
  void* m = nullptr;
  if (posix_memalign(&m, 256, n > 0 ? n : 1) != 0) return cudaErrorMemoryAllocation;
  pinned_allocs[reinterpret_cast<uintptr_t>(m)] = n;
  *p = m;
  return cudaSuccess;
}
cudaError_t cudaFreeHost(void* p) {
  count_runtime_call(__func__);
  if (p == nullptr) return cudaSuccess;
  run_every_stream();
  std::lock_guard<std::mutex> l(mu);
  auto it = pinned_allocs.find(reinterpret_cast<uintptr_t>(p));
  if (it == pinned_allocs.end()) cuemu::fail("cudaFreeHost of a pointer cudaMallocHost did not return");
  pinned_allocs.erase(it);
  std::free(p);
  return cudaSuccess;
}

// Synchronous copies and sets run on the legacy default stream: after the blocking streams' work,
// before the call returns. Streams made with cudaStreamNonBlocking are not waited for.
cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
  count_runtime_call(__func__);
  const HostWait wait;
  check_copy(dst, src, n, kind, "cudaMemcpy");
  run_blocking_streams();
  std::memmove(dst, src, n);
  return cudaSuccess;
}
// Pinned host memory is read or written when the stream gets to the copy. Pageable memory as
// CUDA treats it: a pageable source is read before the call returns; a copy into pageable memory
// returns once it is done (after the stream's earlier work).
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind kind, cudaStream_t stream) {
  count_runtime_call(__func__);
  const HostWait wait;
  check_copy(dst, src, n, kind, "cudaMemcpyAsync");
  const bool pageable_src = n > 0 && !is_device(src) && !is_pinned(src);
  const bool pageable_dst = n > 0 && !is_device(dst) && !is_pinned(dst);
  if (CUstream_st* s = capture_of(stream)) {
    if (pageable_src || pageable_dst) return capture_violation(s, "a copy from or to pageable host memory");
  } else if (pageable_dst) {
    wait_for_stream(stream);
    std::memmove(dst, src, n);
    return cudaSuccess;
  } else if (pageable_src) {
    auto bytes = std::make_shared<std::vector<char>>(static_cast<const char*>(src), static_cast<const char*>(src) + n);
    cuemu::run_on_stream(stream, [dst, bytes]() { std::memcpy(dst, bytes->data(), bytes->size()); });
    return cudaSuccess;
  }
  cuemu::run_on_stream(stream, [=]() { std::memmove(dst, src, n); });
  return cudaSuccess;
}
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width,
                              size_t height, cudaMemcpyKind kind, cudaStream_t stream) {
  count_runtime_call(__func__);
  if (width > dpitch || width > spitch) return cudaErrorInvalidPitchValue;
  if (height > 0) {
    check_copy(dst, src, 0, kind, "cudaMemcpy2DAsync");
    const size_t dn = dpitch * (height - 1) + width, sn = spitch * (height - 1) + width;
    if (kind == cudaMemcpyDeviceToDevice) {
      cuemu::check_device_range(dst, dn, "cudaMemcpy2DAsync destination");
      cuemu::check_device_range(src, sn, "cudaMemcpy2DAsync source");
    }
  }
  auto copy = [=]() {
    for (size_t r = 0; r < height; ++r)
      std::memmove(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch, width);
  };
  const bool pageable = height > 0 && ((!is_device(src) && !is_pinned(src)) || (!is_device(dst) && !is_pinned(dst)));
  if (CUstream_st* s = capture_of(stream)) {
    if (pageable) return capture_violation(s, "a 2D copy from or to pageable host memory");
  } else if (pageable) {  // at once, after the stream's earlier work (stricter than CUDA for a pageable source)
    const HostWait wait;
    wait_for_stream(stream);
    copy();
    return cudaSuccess;
  }
  cuemu::run_on_stream(stream, copy);
  return cudaSuccess;
}
cudaError_t cudaMemset(void* p, int v, size_t n) {
  count_runtime_call(__func__);
  cuemu::check_device_range(p, n, "cudaMemset");
  run_blocking_streams();
  std::memset(p, v, n);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t stream) {
  count_runtime_call(__func__);
  cuemu::check_device_range(p, n, "cudaMemsetAsync");
  cuemu::run_on_stream(stream, [=]() { std::memset(p, v, n); });
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned int flags) {
  count_runtime_call(__func__);
  std::lock_guard<std::recursive_mutex> lock(stream_mu);
  *s = new CUstream_st();
  (*s)->blocking = (flags & cudaStreamNonBlocking) == 0;
  live_streams.push_back(*s);
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* s) {
  count_runtime_call(__func__);
  return cudaStreamCreateWithFlags(s, 0);
}
// The stream's work still runs (now), as CUDA finishes it after the call returns.
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  count_runtime_call(__func__);
  if (s == nullptr) return cudaErrorInvalidResourceHandle;
  std::lock_guard<std::recursive_mutex> lock(stream_mu);
  run_all(s);
  live_streams.erase(std::find(live_streams.begin(), live_streams.end(), s));
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  count_runtime_call(__func__);
  const HostWait wait;
  if (capture_of(s)) return capture_violation(s, "cudaStreamSynchronize");
  wait_for_stream(s);
  return cudaSuccess;
}
cudaError_t cudaStreamQuery(cudaStream_t s) {
  count_runtime_call(__func__);
  if (capture_of(s)) return capture_violation(s, "cudaStreamQuery");
  if (s == nullptr) {
    const HostWait wait;
    wait_for_stream(s);
    return cudaSuccess;
  }
  return run_until(s, s->enqueued, /*may_block=*/false) ? cudaSuccess : cudaErrorNotReady;
}
// The stream's later work runs only after the event's stream has run what came before the record.
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned int) {
  count_runtime_call(__func__);
  if (e == nullptr) return cudaErrorInvalidResourceHandle;
  if (e->stream == nullptr || capture_of(s)) return cudaSuccess;  // complete, or a capture's (not emulated)
  CUstream_st* const other = e->stream;
  const uint64_t after = e->after;
  auto wait = [other, after](bool may_block) {
    std::lock_guard<std::recursive_mutex> lock(stream_mu);
    return !is_live(other) || run_until(other, after, may_block);  // a destroyed stream ran all its work
  };
  if (s == nullptr)
    wait(/*may_block=*/true);
  else
    issue(s, wait);
  return cudaSuccess;
}
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
  count_runtime_call(__func__);
  if (s == nullptr) return cudaErrorStreamCaptureUnsupported;
  if (s->capturing) return cudaErrorIllegalState;
  s->capturing = true;
  s->invalidated = false;
  s->graph = new CUgraph_st();
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g) {
  count_runtime_call(__func__);
  if (s == nullptr || !s->capturing) return cudaErrorIllegalState;
  s->capturing = false;
  if (s->invalidated) {
    delete s->graph;
    s->graph = nullptr;
    *g = nullptr;
    return cudaErrorStreamCaptureInvalidated;
  }
  *g = s->graph;
  s->graph = nullptr;
  return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus* st) {
  count_runtime_call(__func__);
  *st = s == nullptr || !s->capturing ? cudaStreamCaptureStatusNone
        : s->invalidated             ? cudaStreamCaptureStatusInvalidated
                                     : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t g, unsigned long long) {
  count_runtime_call(__func__);
  if (g == nullptr) return cudaErrorInvalidValue;
  *exec = new CUgraphExec_st{std::make_shared<const std::vector<GraphNode>>(g->nodes)};
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  count_runtime_call(__func__);
  if (exec == nullptr) return cudaErrorInvalidValue;
  if (capture_of(stream)) return capture_violation(stream, "cudaGraphLaunch");
  // Node by node, so a query can stop at a node that waits for a peer and go on from there.
  for (size_t i = 0; i < exec->nodes->size(); ++i)
    issue(stream, [nodes = exec->nodes, i](bool may_block) { return (*nodes)[i].run(may_block); });
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
  count_runtime_call(__func__);
  delete g;
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
  count_runtime_call(__func__);
  delete e;
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* e) {
  count_runtime_call(__func__);
  *e = new CUevent_st();
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned int flags) {
  count_runtime_call(__func__);
  *e = new CUevent_st();
  (*e)->timing = (flags & cudaEventDisableTiming) == 0;
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  count_runtime_call(__func__);
  delete e;
  return cudaSuccess;
}
// An event marks what its stream had been given when it was recorded; querying or waiting on it
// runs that much of the stream. Its time is the host's when the stream got there (so elapsed
// times measure the emulated work).
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  count_runtime_call(__func__);
  if (e == nullptr) return cudaErrorInvalidResourceHandle;
  if (capture_of(s)) return cudaSuccess;  // a capture's event nodes are not emulated
  std::lock_guard<std::recursive_mutex> lock(stream_mu);
  auto stamp = std::make_shared<EventStamp>();
  auto reach = [stamp](bool) {
    stamp->at = std::chrono::steady_clock::now();
    stamp->reached = true;
    return true;
  };
  issue(s, reach);  // on the default stream: after the blocking streams, at once
  e->stream = s;
  e->after = s == nullptr ? 0 : s->enqueued;
  e->stamp = std::move(stamp);
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  count_runtime_call(__func__);
  const HostWait wait;
  if (e == nullptr) return cudaErrorInvalidResourceHandle;
  std::lock_guard<std::recursive_mutex> lock(stream_mu);
  if (e->stream != nullptr && is_live(e->stream)) run_until(e->stream, e->after);
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t e) {
  count_runtime_call(__func__);
  if (e == nullptr) return cudaErrorInvalidResourceHandle;
  std::lock_guard<std::recursive_mutex> lock(stream_mu);
  if (e->stream == nullptr || !is_live(e->stream)) return cudaSuccess;
  return run_until(e->stream, e->after, /*may_block=*/false) ? cudaSuccess : cudaErrorNotReady;
}
// As CUDA's: both events recorded with timing, and both reached (else not ready).
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  count_runtime_call(__func__);
  if (ms == nullptr || a == nullptr || b == nullptr || !a->timing || !b->timing || !a->stamp || !b->stamp)
    return cudaErrorInvalidResourceHandle;
  std::lock_guard<std::recursive_mutex> lock(stream_mu);
  if (!a->stamp->reached || !b->stamp->reached) return cudaErrorNotReady;
  *ms = std::chrono::duration<float, std::milli>(b->stamp->at - a->stamp->at).count();
  return cudaSuccess;
}

}  // extern "C"

