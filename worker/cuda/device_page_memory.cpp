// The CUDA PageMemory. Every copy between the pools runs on the copy stream, after (on the device)
// the compute issued before it, and in the background: fence() makes the compute stream wait for
// the copies issued so far, wait_copies() makes the host wait for them. No copy waits on the host.
// Each run of copies in one direction is timed by a pair of events, read once they have passed.
#include "worker/cuda/device_page_memory.h"

#include <cstring>
#include <string>
#include <vector>

#include "worker/cuda/cuda_check.h"

namespace kvmesh {
namespace {

class DevicePageMemory final : public PageMemory {
 public:
  DevicePageMemory(int device, cudaStream_t compute) : device_(device), compute_(compute) {}
  ~DevicePageMemory() override {
    if (copy_ != nullptr) {
      (void)cudaStreamSynchronize(copy_);
      (void)cudaStreamDestroy(copy_);
    }
    if (compute_done_ != nullptr) (void)cudaEventDestroy(compute_done_);
    if (copies_done_ != nullptr) (void)cudaEventDestroy(copies_done_);
    for (const TimedRun& run : runs_) spare_.insert(spare_.end(), {run.start, run.end});
    if (open_.start != nullptr) spare_.push_back(open_.start);
    for (cudaEvent_t e : spare_) (void)cudaEventDestroy(e);
  }

  Status init() {
    KVMESH_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cudaSetDevice");
    KVMESH_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&copy_, cudaStreamNonBlocking),
                                "cudaStreamCreate (KV copy stream)");
    KVMESH_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&compute_done_, cudaEventDisableTiming),
                                "cudaEventCreate");
    KVMESH_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&copies_done_, cudaEventDisableTiming),
                                "cudaEventCreate");
    return Status::ok();
  }

  Result<Buffer> alloc_device(size_t bytes) override {
    KVMESH_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cudaSetDevice");
    void* p = nullptr;
    KVMESH_CUDA_RETURN_IF_ERROR(cudaMalloc(&p, bytes > 0 ? bytes : 1),
                                ("cudaMalloc of the KV device pool (" + std::to_string(bytes) + " bytes)").c_str());
    Buffer buffer(p, bytes, [](void* q, size_t) { (void)cudaFree(q); });
    KVMESH_CUDA_RETURN_IF_ERROR(cudaMemset(p, 0, bytes), "zeroing the KV device pool");
    KVMESH_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize(), "zeroing the KV device pool");
    return buffer;
  }

  Result<Buffer> alloc_host(size_t bytes) override {
    KVMESH_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cudaSetDevice");
    void* p = nullptr;
    KVMESH_CUDA_RETURN_IF_ERROR(cudaMallocHost(&p, bytes > 0 ? bytes : 1),
                                ("cudaMallocHost of the KV host pool (" + std::to_string(bytes) + " bytes)").c_str());
    std::memset(p, 0, bytes);
    return Buffer(p, bytes, [](void* q, size_t) { (void)cudaFreeHost(q); });
  }

  Status copy_to_host(void* host_dst, const void* device_src, size_t bytes) override {
    KVMESH_RETURN_IF_ERROR(after_compute());
    KVMESH_RETURN_IF_ERROR(time_from_here(Direction::to_host));
    KVMESH_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(host_dst, device_src, bytes, cudaMemcpyDeviceToHost, copy_), "KV page to host");
    issued();
    return Status::ok();
  }

  Status copy_to_device(void* device_dst, const void* host_src, size_t bytes) override {
    KVMESH_RETURN_IF_ERROR(after_compute());
    KVMESH_RETURN_IF_ERROR(time_from_here(Direction::to_device));
    KVMESH_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(device_dst, host_src, bytes, cudaMemcpyHostToDevice, copy_), "KV page to device");
    issued();
    return Status::ok();
  }

  Status copy_in_device(void* device_dst, const void* device_src, size_t bytes) override {
    KVMESH_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cudaSetDevice");
    KVMESH_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(device_dst, device_src, bytes, cudaMemcpyDeviceToDevice, compute_), "KV page copy");
    return Status::ok();
  }

  int64_t free_device_bytes() override {
    size_t free_b = 0, total_b = 0;
    if (cudaSetDevice(device_) != cudaSuccess || cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) return 0;
    return static_cast<int64_t>(free_b);
  }

  Status fence() override {
    if (!unfenced_) return Status::ok();
    KVMESH_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cudaSetDevice");
    KVMESH_RETURN_IF_ERROR(end_timed_run());
    KVMESH_CUDA_RETURN_IF_ERROR(cudaEventRecord(copies_done_, copy_), "cudaEventRecord (KV copies)");
    KVMESH_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(compute_, copies_done_, 0), "cudaStreamWaitEvent");
    unfenced_ = false;
    return Status::ok();
  }

  Status wait_copies() override {
    if (!pending_) return Status::ok();
    KVMESH_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cudaSetDevice");
    KVMESH_RETURN_IF_ERROR(end_timed_run());
    KVMESH_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(copy_), "waiting for KV page copies");
    pending_ = false;
    unfenced_ = false;  // the copies are done, so later compute needs no wait for them
    return Status::ok();
  }

  CopySeconds take_copy_seconds() override {
    CopySeconds seconds;
    if (cudaSetDevice(device_) != cudaSuccess) return seconds;
    std::vector<TimedRun> later;
    for (const TimedRun& run : runs_) {
      const cudaError_t q = cudaEventQuery(run.end);
      if (q == cudaErrorNotReady) {
        later.push_back(run);
        continue;
      }
      float ms = 0.0f;
      if (q == cudaSuccess && cudaEventElapsedTime(&ms, run.start, run.end) == cudaSuccess)
        (run.direction == Direction::to_host ? seconds.to_host : seconds.to_device) += ms / 1e3;
      spare_.insert(spare_.end(), {run.start, run.end});
    }
    runs_.swap(later);
    return seconds;
  }

 private:
  enum class Direction { to_host, to_device };
  // Copies of one direction in a row, between a start and an end event on the copy stream.
  struct TimedRun {
    Direction direction = Direction::to_host;
    cudaEvent_t start = nullptr, end = nullptr;
  };

  void issued() { pending_ = unfenced_ = true; }

  Result<cudaEvent_t> timing_event() {
    if (!spare_.empty()) {
      cudaEvent_t e = spare_.back();
      spare_.pop_back();
      return e;
    }
    cudaEvent_t e = nullptr;
    KVMESH_CUDA_RETURN_IF_ERROR(cudaEventCreate(&e), "cudaEventCreate (KV copy timing)");
    return e;
  }
  // Before a copy in `direction`: starts a timed run unless one of that direction is open (it
  // starts after the copy stream's wait for the compute, so it times the copies only).
  Status time_from_here(Direction direction) {
    if (open_.start != nullptr && open_.direction == direction) return Status::ok();
    KVMESH_RETURN_IF_ERROR(end_timed_run());
    KVMESH_ASSIGN_OR_RETURN(cudaEvent_t start, timing_event());
    open_ = {direction, start, nullptr};
    KVMESH_CUDA_RETURN_IF_ERROR(cudaEventRecord(start, copy_), "cudaEventRecord (KV copy timing)");
    return Status::ok();
  }
  Status end_timed_run() {
    if (open_.start == nullptr) return Status::ok();
    TimedRun run = open_;
    open_ = {};
    auto end = timing_event();
    if (!end.is_ok()) {
      spare_.push_back(run.start);
      return end.status();
    }
    run.end = *end;
    runs_.push_back(run);
    KVMESH_CUDA_RETURN_IF_ERROR(cudaEventRecord(run.end, copy_), "cudaEventRecord (KV copy timing)");
    return Status::ok();
  }

  // The copy stream waits for everything the compute stream was given so far.
  Status after_compute() {
    KVMESH_CUDA_RETURN_IF_ERROR(cudaSetDevice(device_), "cudaSetDevice");
    KVMESH_CUDA_RETURN_IF_ERROR(cudaEventRecord(compute_done_, compute_), "cudaEventRecord (compute)");
    KVMESH_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(copy_, compute_done_, 0), "cudaStreamWaitEvent");
    return Status::ok();
  }

  int device_;
  cudaStream_t compute_;
  cudaStream_t copy_ = nullptr;
  cudaEvent_t compute_done_ = nullptr;
  cudaEvent_t copies_done_ = nullptr;
  bool pending_ = false;   // copies issued and not yet waited for on the host
  bool unfenced_ = false;  // copies issued since the compute stream last waited for them
  TimedRun open_;                 // the run being issued (start null: none)
  std::vector<TimedRun> runs_;    // ended runs whose time is not read yet
  std::vector<cudaEvent_t> spare_;  // timing events read, for reuse
};

}  // namespace

Result<std::unique_ptr<PageMemory>> make_device_page_memory(int device, cudaStream_t compute) {
  auto memory = std::make_unique<DevicePageMemory>(device, compute);
  KVMESH_RETURN_IF_ERROR(memory->init());
  return std::unique_ptr<PageMemory>(std::move(memory));
}

}  // namespace kvmesh
